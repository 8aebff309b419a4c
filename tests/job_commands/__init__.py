"""Management commands for tests/test_jobs.py, named by their modules as Django names them."""
