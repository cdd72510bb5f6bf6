"""Benchmarks: speed is measured here, side by side in one run, never by timed tests."""

from etl_core.flow.collector import tune_for_syncs

tune_for_syncs()  # measured as the command line and Dagster runs sync (etl_core.flow.collector)
