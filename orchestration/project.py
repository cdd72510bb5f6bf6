"""``build_definitions``: one source and its versions → the whole Dagster project."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from dagster import AssetSelection, Definitions, define_asset_job

from etl_core import ConfigError, IndexVersion, Source, validate_versions
from etl_core.lifecycle import Thresholds
from etl_core.planner import CloseEnough
from orchestration.assets import build_index_asset, build_source_asset
from orchestration.checks import build_validation_checks
from orchestration.migration import build_migration_jobs
from orchestration.partitions import VERSION_PARTITIONS
from orchestration.resources import SyncEngine
from orchestration.schedules import build_freshness_schedule
from orchestration.sensors import build_planner_sensor
from orchestration.tracking import build_tracking_job


def _env_int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < minimum:
        raise ConfigError(f"{name}={raw!r} must be a whole number of at least {minimum}")
    return int(raw)


def build_definitions(
    source: Source[Any],
    versions: Sequence[IndexVersion[Any]],
    *,
    sync_engine: SyncEngine | None = None,
    close: CloseEnough | None = None,
    catch_up_pages: int | None = None,
    cron: str | None = None,
    automation: bool | None = None,
    read_alias: str | None = None,
    thresholds: Thresholds | None = None,
) -> Definitions:
    """Fails at load, before any run, when versions clash or need columns the source lacks.

    Environment: ``ETL_SCHEDULE_CRON`` (default every minute); ``ETL_CLOSE_ENOUGH_S`` and
    ``ETL_CLOSE_ENOUGH_ROWS`` (how far behind the head a version may be and still share the live
    lane, default 300 s and 10 000 rows); ``ETL_CATCH_UP_PAGES`` (page budget of one catch-up run,
    default 200); ``ETL_AUTOMATION=off`` to start with the sensor and schedules stopped (switch
    them on in the UI); ``ETL_READ_ALIAS`` (the alias readers query, default ``products``);
    ``ETL_MAX_DEAD_LETTERS``, ``ETL_MAX_LAG_ROWS``, ``ETL_MAX_LAG_S`` (validation thresholds,
    default 0, 0, 300); ``ETL_RECONCILE_CRON`` (default ``0 3 * * *``); ``ETL_FOLLOW_S`` (follow
    mode, sources with change capture: each scheduled live-lane run follows the source for this
    many seconds; 0, the default, syncs once per tick).
    """
    validate_versions(versions, source.fields)
    close = close or CloseEnough(
        timedelta(seconds=_env_int("ETL_CLOSE_ENOUGH_S", 300)), _env_int("ETL_CLOSE_ENOUGH_ROWS", 10_000)
    )
    catch_up_pages = catch_up_pages or _env_int("ETL_CATCH_UP_PAGES", 200)
    cron = cron or os.environ.get("ETL_SCHEDULE_CRON", "* * * * *")
    if automation is None:
        automation = os.environ.get("ETL_AUTOMATION", "on").lower() not in ("off", "false", "0")

    read_alias = read_alias or os.environ.get("ETL_READ_ALIAS", "products")
    follow_s = float(_env_int("ETL_FOLLOW_S", 0, minimum=0)) if source.tracking is not None else 0.0
    thresholds = thresholds or Thresholds(
        max_dead_letters=_env_int("ETL_MAX_DEAD_LETTERS", 0, minimum=0),
        max_lag_rows=_env_int("ETL_MAX_LAG_ROWS", 0, minimum=0),
        max_lag_seconds=float(_env_int("ETL_MAX_LAG_S", 300, minimum=0)),
    )

    source_asset = build_source_asset(source)
    index = build_index_asset(source, versions, source_asset, read_alias, close)
    checks = build_validation_checks(source, list(versions), index, thresholds)
    validate_job = define_asset_job(
        "validate_version",
        selection=AssetSelection.checks(checks),
        partitions_def=VERSION_PARTITIONS,
        description="Run the validation checks of one version partition (the cut-over gate).",
    )
    migration_jobs, migration_schedules = build_migration_jobs(
        source,
        versions,
        index.key,
        read_alias,
        os.environ.get("ETL_RECONCILE_CRON", "0 3 * * *"),
        automation,
    )
    job = define_asset_job(
        "sync_index",
        selection=AssetSelection.assets(index).without_checks(),
        description="Sync a contiguous range of index versions in one lane.",
    )
    tracking_jobs = [build_tracking_job(source)] if source.tracking is not None else []
    return Definitions(
        assets=[source_asset, index],
        asset_checks=[checks],
        jobs=[job, validate_job, *migration_jobs, *tracking_jobs],
        sensors=[
            build_planner_sensor(source, versions, job, index.key, close, catch_up_pages, running=automation)
        ],
        schedules=[
            build_freshness_schedule(
                source,
                versions,
                job,
                index.key,
                close,
                catch_up_pages,
                cron,
                running=automation,
                follow_s=follow_s,
            ),
            *migration_schedules,
        ],
        resources={"sync_engine": sync_engine or SyncEngine.from_env()},
    )
