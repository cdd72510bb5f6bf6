"""``build_definitions``: one source and its versions → the whole Dagster project of that source.

Every object is named after the source (:mod:`orchestration.naming`), so several sources merge
into one code location and one instance::

    defs = Definitions.merge(
        build_definitions(CATALOGUE, CATALOGUE_VERSIONS, read_alias="products"),
        build_definitions(ORDERS, ORDER_VERSIONS),
    )

Sources in the same PostgreSQL and OpenSearch share the default resource (one ``SyncServices`` from
the environment, under the key ``sync_services``); a source elsewhere gets its own key and engine:
``build_definitions(CRM, CRM_VERSIONS, resource_key="crm_services", sync_services=SyncServices(...))``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    Definitions,
    ExecutorDefinition,
    ScheduleDefinition,
    define_asset_job,
)

from etl_core import IndexVersion, Source, validate_versions
from etl_core.model.versions import with_prefix
from etl_core.operations.lane_plan import CloseEnough
from etl_core.operations.validation import Thresholds
from etl_core.settings import Declared
from orchestration.assets import build_index_asset, build_source_asset
from orchestration.backfill import build_backfill_job
from orchestration.change_tracking import build_tracking_job
from orchestration.checks import build_validation_checks
from orchestration.freshness import policy_of
from orchestration.migration import build_migration_jobs
from orchestration.naming import Names
from orchestration.resources import SyncServices
from orchestration.schedules import build_freshness_schedule
from orchestration.sensors import build_planner_sensor, build_validation_sensor
from orchestration.spec import SourceSpec


@functools.cache
def shared_services() -> SyncServices:
    """The one default resource of a process: Dagster merges definitions only when a key names
    the very same resource object."""
    return SyncServices.from_env()


def build_definitions(
    source: Source[Any],
    versions: Sequence[IndexVersion[Any]],
    *,
    sync_services: SyncServices | None = None,
    resource_key: str = "sync_services",
    read_alias: str | None = None,
    index_prefix: str | None = None,
    close: CloseEnough | None = None,
    catch_up_pages: int | None = None,
    cron: str | None = None,
    automation: bool | None = None,
    thresholds: Thresholds | None = None,
    backfill_executor: ExecutorDefinition | None = None,
    backfill_shards: int | None = None,
    owners: Sequence[str] | None = None,
    follow_s: float | None = None,
    pool: str | None = None,
) -> Definitions:
    """Fails at load, before any run, when versions clash or need columns the source lacks.

    ``read_alias`` (the alias readers query, which the cut-over job moves) overrides the source's
    (``Source.alias``, default its name); ``index_prefix`` (default ``ETL_INDEX_PREFIX``) goes
    before it and before every physical index name.

    Every default comes from the environment (declared in ``etl_core.settings.Declared``):
    ``ETL_SCHEDULE_CRON`` (default every minute); ``ETL_CLOSE_ENOUGH_S`` and
    ``ETL_CLOSE_ENOUGH_ROWS`` (how far behind the head a version may be and still share the live
    lane, default 300 s and 10 000 rows); ``ETL_CATCH_UP_PAGES`` (page budget of one catch-up run,
    default 200); ``ETL_AUTOMATION=off`` to start with the sensor and schedules stopped (switch
    them on in the UI); ``ETL_MAX_DEAD_LETTERS``, ``ETL_MAX_LAG_ROWS``, ``ETL_MAX_LAG_S``
    (validation thresholds, default 0, 0, 300); ``ETL_RECONCILE_CRON`` (default ``0 3 * * *``);
    ``ETL_FOLLOW_S`` (follow mode, sources with change capture: each scheduled live-lane run
    follows the source for this many seconds; 0, the default, syncs once per tick; ``follow_s``
    sets it for this source).

    ``pool`` (default ``<source>_sync``) is the Dagster pool the source's runs hold: sources that
    name the same pool never sync at once.

    ``backfill_executor`` runs the shards of the ``<source>_backfill`` job (sources with change
    capture): Dagster's multiprocess executor by default; ``dagster_celery.celery_executor`` or
    ``dagster_k8s.k8s_job_executor`` spread them over machines. ``backfill_shards`` (default
    ``ETL_BACKFILL_SHARDS``, 0): at 2 or more the planner builds a never-synced version with that
    job in that many key ranges instead of paged catch-up runs.
    """
    names = Names(source.name, pool_name=pool)
    env = Declared.read()
    prefix = env.etl_index_prefix if index_prefix is None else index_prefix
    versions = with_prefix(versions, prefix)
    validate_versions(versions, source.fields)
    close = close or CloseEnough.of(env)
    catch_up_pages = catch_up_pages or env.etl_catch_up_pages
    cron = cron or env.etl_schedule_cron
    automation = env.etl_automation if automation is None else automation
    follow_s = (env.etl_follow_s if follow_s is None else follow_s) if source.tracking is not None else 0.0
    thresholds = thresholds or Thresholds.of(env)
    backfill_shards = env.etl_backfill_shards if backfill_shards is None else backfill_shards
    spec = SourceSpec(
        source=source,
        versions=tuple(versions),
        names=names,
        read_alias=f"{prefix}{read_alias or source.read_alias}",
        close=close,
        resource_key=resource_key,
        owners=tuple(env.owners() if owners is None else owners),
        freshness=policy_of(env),
    )

    source_asset = build_source_asset(spec)
    index = build_index_asset(spec, source_asset)
    checks = build_validation_checks(spec, index, thresholds)
    validate_job = define_asset_job(
        names.job("validate"),
        selection=AssetSelection.checks(checks),
        description="Run the validation checks of one version partition (the cut-over gate).",
    )
    migration_jobs, migration_schedules = build_migration_jobs(spec, env.etl_reconcile_cron, automation)
    observe_job = define_asset_job(
        names.job("observe"),
        selection=AssetSelection.assets(source_asset),
        description=f"Observe the PostgreSQL source `{source.name}`: its change log's head and what waits.",
    )
    observe_schedule = ScheduleDefinition(
        name=f"{names.source}_observe_source",
        job=observe_job,
        cron_schedule=env.etl_observe_cron,
        default_status=DefaultScheduleStatus.RUNNING if automation else DefaultScheduleStatus.STOPPED,
        description=f"Observes `{names.source_asset}` (ETL_OBSERVE_CRON), so the catalogue shows the "
        "source's head and the changes waiting without a sync.",
    )
    job = define_asset_job(
        names.job("sync"),
        selection=AssetSelection.assets(index).without_checks(),
        description=f"Sync a contiguous range of `{source.name}` index versions in one lane.",
    )
    backfill_job = build_backfill_job(spec, backfill_executor) if source.tracking is not None else None
    tracking_jobs = [build_tracking_job(spec), backfill_job] if backfill_job is not None else []
    return Definitions(
        assets=[source_asset, index],
        asset_checks=[checks],
        jobs=[job, validate_job, observe_job, *migration_jobs, *tracking_jobs],
        sensors=[
            build_planner_sensor(
                spec,
                job,
                catch_up_pages,
                running=automation,
                backfill_job=backfill_job,
                backfill_shards=backfill_shards,
            ),
            build_validation_sensor(spec, validate_job, running=automation),
        ],
        schedules=[
            build_freshness_schedule(spec, job, catch_up_pages, cron, running=automation, follow_s=follow_s),
            *migration_schedules,
            observe_schedule,
        ],
        resources={resource_key: sync_services or shared_services()},
    )
