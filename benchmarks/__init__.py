"""Benchmarks: per-request cost of the middleware against the anchors (see README.md)."""
