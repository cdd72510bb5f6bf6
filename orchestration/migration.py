"""Jobs for the migration's other steps: cut over (and roll back), retire, replay, reconcile.

Each runs in the sync pool, so none of them races a sync of the same indices.
"""

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from dagster import (
    AssetKey,
    AssetObservation,
    Config,
    DefaultScheduleStatus,
    Failure,
    MetadataValue,
    OpExecutionContext,
    ScheduleDefinition,
    job,
    op,
)
from pydantic import Field

from etl_core import IndexVersion, Source
from etl_core.lifecycle import LifecycleRefused, Lifecycles
from etl_core.reconcile import reconcile
from etl_core.replay import replay_dead_letters
from orchestration.partitions import SYNC_POOL
from orchestration.resources import SyncEngine


class VersionConfig(Config):  # type: ignore[misc]
    version: str


class RetireConfig(Config):  # type: ignore[misc]
    version: str
    grace_hours: float = 24.0
    """The index is deleted by the reconcile job once this much time has passed."""


class VersionsConfig(Config):  # type: ignore[misc]
    versions: list[str] = Field(default_factory=list)
    """Empty: every declared version that is not retired."""


class ReconcileConfig(VersionsConfig):
    repair: bool = True


def build_migration_jobs(
    source: Source[Any],
    versions: Sequence[IndexVersion[Any]],
    index_key: AssetKey,
    alias: str,
    reconcile_cron: str,
    running: bool,
) -> tuple[list[Any], list[ScheduleDefinition]]:
    by_key = {v.key: v for v in versions}

    def pick(context: OpExecutionContext, wanted: list[str], retired: set[str]) -> list[IndexVersion[Any]]:
        unknown = [k for k in wanted if k not in by_key]
        if unknown:
            raise Failure(f"versions {unknown} are not declared; declared are {sorted(by_key)}")
        chosen = [by_key[k] for k in (wanted or by_key) if k not in retired]
        context.log.info(f"versions: {[v.key for v in chosen]}")
        return chosen

    def one(key: str) -> IndexVersion[Any]:
        if key not in by_key:
            raise Failure(f"version {key!r} is not declared; declared are {sorted(by_key)}")
        return by_key[key]

    @op(pool=SYNC_POOL, description=f"Point the read alias `{alias}` at a validated version.")
    def swap_read_alias(context: OpExecutionContext, config: VersionConfig, sync_engine: SyncEngine) -> None:
        with sync_engine.connect() as conns:
            try:
                previous = Lifecycles(conns.state).cut_over(one(config.version), alias, conns.sink)
            except LifecycleRefused as exc:
                raise Failure(str(exc)) from None
        context.log.info(f"alias {alias} now names {one(config.version).index} (was {previous})")

    @op(pool=SYNC_POOL, description="Stop syncing a version; delete its index after a grace period.")
    def record_retirement(context: OpExecutionContext, config: RetireConfig, sync_engine: SyncEngine) -> None:
        with sync_engine.connect() as conns:
            conns.state.create()
            try:
                when = Lifecycles(conns.state).retire(
                    one(config.version), alias, conns.sink, timedelta(hours=config.grace_hours)
                )
            except LifecycleRefused as exc:
                raise Failure(str(exc)) from None
        context.log.info(f"{config.version} retired; its index is deleted after {when.isoformat()}")

    @op(pool=SYNC_POOL, description="Re-read dead-lettered rows by key and index them again.")
    def replay(context: OpExecutionContext, config: VersionsConfig, sync_engine: SyncEngine) -> None:
        with sync_engine.connect() as conns:
            conns.state.create()
            chosen = pick(context, config.versions, Lifecycles(conns.state).retired())
            results = replay_dead_letters(
                chosen, extractor=conns.extractor(source), sink=conns.sink, dead_letters=conns.dead_letters
            )
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
        pool=SYNC_POOL,
        description="Walk both sides' keys: delete orphans, re-index missing or "
        "drifted documents; delete indices past their grace period.",
    )
    def reconcile_versions(
        context: OpExecutionContext, config: ReconcileConfig, sync_engine: SyncEngine
    ) -> None:
        with sync_engine.connect() as conns:
            conns.state.create()
            life = Lifecycles(conns.state)
            chosen = pick(context, config.versions, life.retired())
            with conns.lanes.hold(chosen):  # repairs overwrite: no sync may write meanwhile
                drifts = reconcile(
                    chosen,
                    conns.extractor(source),
                    conns.sink,
                    repair=config.repair,
                    dead_letters=conns.dead_letters,
                )
            deleted = life.delete_expired(conns.sink)
        for key, d in drifts.items():
            context.log_event(
                AssetObservation(
                    asset_key=index_key,
                    partition=key,
                    metadata={
                        **{f"reconcile_{k}": v for k, v in d.counts.items()},
                        "reconcile_repaired": d.repaired,
                        "reconcile_dead_lettered": d.dead_lettered,
                        "reconcile_documents": d.indexed,
                        "reconcile_source_rows": d.expected,
                        "reconcile_examples": MetadataValue.json(d.examples),
                    },
                )
            )
            context.log.info(d.describe())
        if deleted:
            context.log.info(f"deleted retired indices {deleted}")

    @job(name="cut_over", description=swap_read_alias.description)
    def cut_over_job() -> None:
        swap_read_alias()

    @job(name="retire_version", description=record_retirement.description)
    def retire_job() -> None:
        record_retirement()

    @job(name="replay_dead_letters", description=replay.description)
    def replay_job() -> None:
        replay()

    @job(name="reconcile", description=reconcile_versions.description)
    def reconcile_job() -> None:
        reconcile_versions()

    jobs = [cut_over_job, retire_job, replay_job, reconcile_job]
    schedule = ScheduleDefinition(
        name="reconcile_nightly",
        job=reconcile_job,
        cron_schedule=reconcile_cron,
        default_status=DefaultScheduleStatus.RUNNING if running else DefaultScheduleStatus.STOPPED,
    )
    return jobs, [schedule]
