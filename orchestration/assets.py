"""The index asset (one partition per version) and the observable PostgreSQL source."""

from collections.abc import Iterator

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    Config,
    DataVersion,
    MetadataValue,
    ObserveResult,
    asset,
    multi_observable_source_asset,
)

from etl_core.errors import EtlError
from etl_core.flow.pipeline import combine
from etl_core.operations.status import describe_versions
from etl_core.operations.steps import Operations
from orchestration.cursors import DagsterCursorStore, import_cursors
from orchestration.freshness import evaluate
from orchestration.freshness import record as record_freshness
from orchestration.metadata import source_metadata, version_metadata
from orchestration.planning import active
from orchestration.spec import SourceSpec


class SyncConfig(Config):
    max_pages: int = 0
    """Stop after this many pages (0: run to the high watermark). Catch-up lanes use a budget so
    the live lane gets its turn between chunks."""
    checkpoint_every_s: float = 5.0
    """How often a long run shows its cursors as checkpoints (AssetObservations) in the UI."""
    follow_s: float = 0.0
    """Follow mode (sources with change capture): keep syncing on every commit's notification
    for this many seconds, then end; the schedule starts the next follower."""


def trim_log(context: AssetExecutionContext, ops: Operations) -> None:
    """Drop change-log entries every non-retired version has read. A role without DELETE on the
    log only loses the trimming: a warning, not a failed sync."""
    if ops.source.tracking is None:
        return
    try:
        deleted = ops.trim()
    except EtlError as exc:
        context.log.warning(str(exc))
        return
    if deleted:
        context.log.info(f"change log trimmed: {deleted} entries every version has read")


def build_index_asset(spec: SourceSpec, source_asset: AssetsDefinition) -> AssetsDefinition:
    source, names = spec.source, spec.names

    @asset(
        name=names.asset,
        group_name=names.group,
        partitions_def=names.partitions,
        backfill_policy=BackfillPolicy.single_run(),
        pool=names.pool,
        deps=[source_asset],
        kinds={"opensearch"},
        owners=list(spec.owners),
        freshness_policy=spec.freshness,
        required_resource_keys={spec.resource_key},
        description=(
            f"OpenSearch index versions of the `{source.name}` source (read alias "
            f"`{spec.read_alias}`). One partition per version; a run over several partitions reads "
            "PostgreSQL once for all of them. Freshness is judged on the age of the oldest committed "
            "change that the versions readers query (or may switch to) have not applied, not on the "
            "time since the last materialisation."
        ),
    )
    def _index(context: AssetExecutionContext, config: SyncConfig) -> None:
        keys = list(context.partition_keys)
        lane = [spec.version(k) for k in keys]
        with spec.operate(context.resources) as ops:
            conns = ops.conns
            import_cursors(context.instance, context.asset_key, keys, conns.cursors)
            store = DagsterCursorStore(
                context.asset_key, context.log_event, conns.cursors, every_s=config.checkpoint_every_s
            )
            extractor = conns.extractor(source)
            try:
                if config.follow_s > 0:
                    followed = ops.follow(
                        lane, window_s=config.follow_s, extractor=extractor, cursors=store, keep_results=True
                    )
                    result = combine(followed.results)
                    context.log.info(
                        f"followed {keys} for {config.follow_s:.0f} s: {followed.syncs} syncs, "
                        f"{followed.wakeups} wake-ups, {followed.polls} polls"
                    )
                else:
                    result = ops.sync(
                        lane, extractor=extractor, cursors=store, max_pages=config.max_pages or None
                    )
            finally:
                store.flush()  # the UI's trail shows the last acknowledged page, even when the run fails
            trim_log(context, ops)
            lag = extractor.lag({k: result.versions[k].cursor for k in keys})
            verdict = evaluate(conns, spec, spec.freshness, lag) if spec.freshness else None
            statuses = describe_versions(
                lane,
                cursors={k: result.versions[k].cursor for k in keys},
                lag=lag,
                records=ops.records,
                dead_letters=conns.dead_letters,
                sink=conns.sink,
                alias=spec.read_alias,
                close=spec.close,
            )
        for status in statuses:
            context.add_asset_metadata(version_metadata(status, lag, result), partition_key=status.key)
        context.log.info(
            f"synced {keys} in one extraction: pages={result.pages} rows={result.rows_read} "
            f"caught_up={result.caught_up} checkpoints={store.checkpoints}"
        )
        if verdict is not None:
            record_freshness(context.instance, context.asset_key, verdict)
            context.log.info(verdict.describe())

    return _index


def build_source_asset(spec: SourceSpec) -> AssetsDefinition:
    """The PostgreSQL source, observed (the ``<source>_observe`` job, on its schedule): where its
    change log's head is, how many committed changes wait for the slowest version that is not
    retired, and how old the oldest of them is."""
    source = spec.source
    key = AssetKey(spec.names.source_asset)

    @multi_observable_source_asset(  # type: ignore[untyped-decorator]
        specs=[
            AssetSpec(
                key,
                group_name=spec.names.group,
                kinds={"postgres"},
                owners=list(spec.owners),
                description=f"The PostgreSQL source `{source.name}`: its change log's head, the "
                "committed changes waiting for the slowest version, and the oldest one's age.",
            )
        ],
        name=spec.names.source_asset,
        required_resource_keys={spec.resource_key},
    )
    def _observe(context: AssetExecutionContext) -> Iterator[ObserveResult]:
        with spec.connect(context.resources) as conns:
            versions = active(spec.versions, conns.records.retired())
            extractor = conns.extractor(source)
            head = extractor.head()
            lag = extractor.lag(conns.cursors.load(versions))
            verdict = evaluate(conns, spec, spec.freshness, lag) if spec.freshness else None
        metadata = source_metadata(head, versions, lag)
        if verdict is not None:
            # the index's freshness is judged here too: a stalled sync runs no asset to judge it
            record_freshness(context.instance, spec.names.asset_key, verdict)
            metadata["index_freshness"] = MetadataValue.text(verdict.describe())
        yield ObserveResult(asset_key=key, data_version=DataVersion(head or "empty"), metadata=metadata)

    observed: AssetsDefinition = _observe
    return observed
