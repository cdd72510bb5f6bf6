"""Jobs for the migration's other steps: cut over (and roll back), retire, replay, reconcile.

Each op is a thin adapter over :class:`etl_core.operations.steps.Operations`, as the command line is: the
operation holds the lane lock of the versions it writes, so none of them races a sync of the same
indices, whichever door that sync came through (the source's pool only orders Dagster's own runs).
"""

from datetime import timedelta
from typing import Any

from dagster import (
    AssetObservation,
    Config,
    DefaultScheduleStatus,
    MetadataValue,
    OpExecutionContext,
    ScheduleDefinition,
    job,
    op,
)
from pydantic import Field

from orchestration.planning import active
from orchestration.spec import SourceSpec


class VersionConfig(Config):
    version: str


class RetireConfig(Config):
    version: str
    grace_hours: float = 24.0
    """The index is deleted by the reconcile job once this much time has passed."""


class VersionsConfig(Config):
    versions: list[str] = Field(default_factory=list)
    """Empty: every declared version that is not retired."""


class ReconcileConfig(VersionsConfig):
    repair: bool = True


def build_migration_jobs(
    spec: SourceSpec, reconcile_cron: str, running: bool
) -> tuple[list[Any], list[ScheduleDefinition]]:
    source, names, alias, index_key = spec.source, spec.names, spec.read_alias, spec.names.asset_key
    resources = {spec.resource_key}

    @op(
        name=names.op("swap_read_alias"),
        pool=names.pool,
        required_resource_keys=resources,
        description=f"Point the read alias `{alias}` at a validated version of `{source.name}`.",
    )
    def swap_read_alias(context: OpExecutionContext, config: VersionConfig) -> None:
        with spec.operate(context.resources) as ops:
            previous = ops.cut_over(config.version)
            index = ops.version(config.version).index
        context.log.info(f"alias {alias} now names {index} (was {previous})")

    @op(
        name=names.op("record_retirement"),
        pool=names.pool,
        required_resource_keys=resources,
        description="Stop syncing a version; delete its index after a grace period.",
    )
    def record_retirement(context: OpExecutionContext, config: RetireConfig) -> None:
        with spec.operate(context.resources) as ops:
            when = ops.retire(config.version, timedelta(hours=config.grace_hours))
        context.log.info(f"{config.version} retired; its index is deleted after {when.isoformat()}")

    @op(
        name=names.op("replay_dead_letters"),
        pool=names.pool,
        required_resource_keys=resources,
        description="Re-read dead-lettered rows by key and index them again.",
    )
    def replay(context: OpExecutionContext, config: VersionsConfig) -> None:
        with spec.operate(context.resources) as ops:
            results = ops.replay(config.versions)
        context.log.info(f"versions: {list(results)}")
        for key, r in results.items():
            context.log_event(
                AssetObservation(
                    asset_key=index_key,
                    partition=key,
                    metadata={
                        "replay_resolved": r.resolved,
                        "replay_still_failing": r.still_failing,
                        "replay_gone": r.gone,
                    },
                )
            )

    @op(
        name=names.op("reconcile_versions"),
        pool=names.pool,
        required_resource_keys=resources,
        description="Walk both sides' keys: delete orphans, re-index missing or "
        "drifted documents; delete indices past their grace period.",
    )
    def reconcile_versions(context: OpExecutionContext, config: ReconcileConfig) -> None:
        with spec.operate(context.resources) as ops:
            drifts, deleted = ops.reconcile(config.versions, repair=config.repair)
        for key, d in drifts.items():
            found = d.to_json()
            context.log_event(
                AssetObservation(
                    asset_key=index_key,
                    partition=key,
                    metadata={
                        **{f"reconcile_{k}": v for k, v in found.items() if k != "summary"},
                        "reconcile_examples": MetadataValue.json(d.examples),
                    },
                )
            )
            context.log.info(d.describe())
        if deleted:
            context.log.info(f"deleted retired indices {deleted}")

    @op(
        name=names.op("add_version_partitions"),
        required_resource_keys=resources,
        description=f"Add a partition for each declared version of `{source.name}` that is not "
        "retired (what the planner sensor does on its tick), so runs and backfills can target them "
        "with the daemon or automation off.",
    )
    def add_version_partitions(context: OpExecutionContext) -> None:
        with spec.connect(context.resources) as conns:
            declared = active(spec.versions, conns.records.retired())
        existing = set(context.instance.get_dynamic_partitions(names.partitions_name))
        new = [k for k in declared if k not in existing]
        if new:
            context.instance.add_dynamic_partitions(names.partitions_name, new)
        context.log.info(f"partitions {declared}: added {new}")

    @job(name=names.job("register_versions"), description=add_version_partitions.description)
    def register_versions_job() -> None:
        add_version_partitions()

    @job(name=names.job("cut_over"), description=swap_read_alias.description)
    def cut_over_job() -> None:
        swap_read_alias()

    @job(name=names.job("retire"), description=record_retirement.description)
    def retire_job() -> None:
        record_retirement()

    @job(name=names.job("replay"), description=replay.description)
    def replay_job() -> None:
        replay()

    @job(name=names.job("reconcile"), description=reconcile_versions.description)
    def reconcile_job() -> None:
        reconcile_versions()

    jobs = [register_versions_job, cut_over_job, retire_job, replay_job, reconcile_job]
    schedule = ScheduleDefinition(
        name=names.reconcile_schedule,
        job=reconcile_job,
        cron_schedule=reconcile_cron,
        description=f"Nightly reconcile of `{source.name}` (ETL_RECONCILE_CRON): repairs drift in every "
        "version that is not retired and deletes the indices of versions retired past their grace.",
        default_status=DefaultScheduleStatus.RUNNING if running else DefaultScheduleStatus.STOPPED,
    )
    return jobs, [schedule]
