"""The ``<source>_backfill`` job: a sharded backfill as steps of one Dagster run.

``plan`` takes the snapshot, creates the indices and cuts the keys into K ranges (one dynamic output
each); one ``walk_shard`` step per range runs on Dagster's executor (the multiprocess executor by
default: one process per shard, at most ``max_concurrent`` at once); ``hand_over`` collects them
and moves the versions onto the change log at that snapshot, recording each version's cursor as a
materialisation of its partition. Re-executing a failed run from failure re-runs only the shards
that did not finish, and those resume from their own checkpoints (``etl_core.flow.shards``).
"""

from typing import Any

from dagster import (
    AssetMaterialization,
    Config,
    DynamicOut,
    DynamicOutput,
    ExecutorDefinition,
    JobDefinition,
    MetadataValue,
    OpExecutionContext,
    job,
    multiprocess_executor,
    op,
)
from pydantic import Field

from etl_core.flow.shards import ShardPlan, hand_over, plan_shards, sync_shard
from etl_core.operations.status import describe_versions
from orchestration.metadata import version_metadata
from orchestration.spec import SourceSpec


class BackfillConfig(Config):
    versions: list[str] = Field(default_factory=list)
    """The lane to build (empty: every declared version that is not retired)."""
    shards: int = 4
    """How many key ranges; each is one step of the run."""


def build_backfill_job(spec: SourceSpec, executor: ExecutorDefinition | None = None) -> JobDefinition:
    names, resources = spec.names, {spec.resource_key}

    @op(
        name=names.op("plan_shards"),
        pool=names.pool,
        required_resource_keys=resources,
        out=DynamicOut(dict),
        description="Take the snapshot, create the indices, cut the keys into ranges.",
    )
    def plan(context: OpExecutionContext, config: BackfillConfig) -> Any:
        with spec.operate(context.resources) as ops:
            conns = ops.conns
            chosen = ops.chosen(config.versions)
            shard_plan = plan_shards(
                chosen,
                config.shards,
                extractor=conns.extractor(spec.source),
                sink=conns.sink,
                plans=conns.shard_plans,
            )
        context.log.info(
            f"backfill of {[v.key for v in chosen]} under snapshot {shard_plan.snapshot}: "
            f"{len(shard_plan.shards)} shards {[(s.after, s.until) for s in shard_plan.shards]}"
        )
        for shard in shard_plan.shards:
            yield DynamicOutput(
                {"plan": shard_plan.to_json(), "shard": shard.number, "versions": [v.key for v in chosen]},
                mapping_key=f"shard{shard.number}",
            )

    @op(
        name=names.op("walk_shard"),
        pool=names.pool,
        required_resource_keys=resources,
        description="Walk one key range under the plan's snapshot (resumes from its checkpoint).",
    )
    def walk_shard(context: OpExecutionContext, work: dict[str, Any]) -> dict[str, Any]:
        shard_plan = ShardPlan.from_json(work["plan"])
        shard = shard_plan.shards[work["shard"] - 1]
        versions = [spec.version(k) for k in work["versions"]]
        with spec.connect(context.resources) as conns, conns.lanes.hold(versions, shared=True):
            result = sync_shard(
                versions,
                shard,
                extractor=conns.extractor(spec.source),
                sink=conns.sink,
                dead_letters=conns.dead_letters,
                cursors=conns.cursors,
                in_flight=conns.settings.bulk_in_flight,
            )
        context.log.info(
            f"shard {shard.number}/{shard.count} ({shard.after}, {shard.until}]: "
            f"{result.rows_read} rows in {result.pages} pages"
        )
        return work

    @op(
        name=names.op("hand_over"),
        pool=names.pool,
        required_resource_keys=resources,
        description="Every shard done: the versions follow the change log from the plan's snapshot.",
    )
    def hand_over_shards(context: OpExecutionContext, done: list[dict[str, Any]]) -> None:
        shard_plan = ShardPlan.from_json(done[0]["plan"])
        versions = [spec.version(k) for k in done[0]["versions"]]
        with spec.connect(context.resources) as conns, conns.lanes.hold(versions):
            position = hand_over(
                versions, shard_plan, cursors=conns.cursors, sink=conns.sink, plans=conns.shard_plans
            )
            cursors = {v.key: position for v in versions}
            lag = conns.extractor(spec.source).lag(cursors)
            statuses = describe_versions(
                versions,
                cursors=cursors,
                lag=lag,
                records=conns.records,
                dead_letters=conns.dead_letters,
                sink=conns.sink,
                alias=spec.read_alias,
                close=spec.close,
            )
        for status in statuses:
            context.log_event(
                AssetMaterialization(
                    asset_key=names.asset_key,
                    partition=status.key,
                    metadata={
                        **version_metadata(status, lag),
                        "shards": MetadataValue.int(len(shard_plan.shards)),
                    },
                )
            )
        context.log.info(f"{[v.key for v in versions]} follow the change log from {position.describe()}")

    @job(
        name=names.job("backfill"),
        executor_def=executor or multiprocess_executor,
        description=f"Build `{spec.source.name}` versions from nothing in parallel key ranges (shards).",
    )
    def backfill_job() -> None:
        hand_over_shards(plan().map(walk_shard).collect())

    return backfill_job
