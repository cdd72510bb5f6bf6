"""Benchmarks: speed is measured here, side by side in one run, never by timed tests."""
