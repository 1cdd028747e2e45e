"""Benchmarks: speed and quality figures, printed as tables and written as JSON. Not run by the tests."""
