"""Dagster orchestration around ``etl_core``: partitions per index version, planner, schedule."""
