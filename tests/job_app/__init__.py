"""Management commands run as scheduled jobs (tests/test_jobs.py, tests/test_peers_jobs.py)."""
