"""``build_definitions``: one source and its versions → the whole Dagster project."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from dagster import Definitions, define_asset_job

from etl_core import ConfigError, IndexVersion, Source, validate_versions
from etl_core.planner import CloseEnough
from orchestration.assets import build_index_asset, build_source_asset
from orchestration.resources import SyncEngine
from orchestration.schedules import build_freshness_schedule
from orchestration.sensors import build_planner_sensor


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise ConfigError(f"{name}={raw!r} must be a positive whole number")
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
) -> Definitions:
    """Fails at load, before any run, when versions clash or need columns the source lacks.

    Environment: ``ETL_SCHEDULE_CRON`` (default every minute); ``ETL_CLOSE_ENOUGH_S`` and
    ``ETL_CLOSE_ENOUGH_ROWS`` (how far behind the head a version may be and still share the live
    lane, default 300 s and 10 000 rows); ``ETL_CATCH_UP_PAGES`` (page budget of one catch-up run,
    default 200); ``ETL_AUTOMATION=off`` to start with the sensor and schedule stopped (switch
    them on in the UI).
    """
    validate_versions(versions, source.fields)
    close = close or CloseEnough(
        timedelta(seconds=_env_int("ETL_CLOSE_ENOUGH_S", 300)), _env_int("ETL_CLOSE_ENOUGH_ROWS", 10_000)
    )
    catch_up_pages = catch_up_pages or _env_int("ETL_CATCH_UP_PAGES", 200)
    cron = cron or os.environ.get("ETL_SCHEDULE_CRON", "* * * * *")
    if automation is None:
        automation = os.environ.get("ETL_AUTOMATION", "on").lower() not in ("off", "false", "0")

    source_asset = build_source_asset(source)
    index = build_index_asset(source, versions, source_asset)
    job = define_asset_job(
        "sync_index", selection=[index], description="Sync a contiguous range of index versions in one lane."
    )
    return Definitions(
        assets=[source_asset, index],
        jobs=[job],
        sensors=[
            build_planner_sensor(source, versions, job, index.key, close, catch_up_pages, running=automation)
        ],
        schedules=[
            build_freshness_schedule(
                source, versions, job, index.key, close, catch_up_pages, cron, running=automation
            )
        ],
        resources={"sync_engine": sync_engine or SyncEngine.from_env()},
    )
