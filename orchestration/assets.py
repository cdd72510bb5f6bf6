"""The index asset (one partition per version) and the observable PostgreSQL source."""

import math
from collections.abc import Sequence
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    Config,
    DataVersion,
    MetadataValue,
    ObserveResult,
    SourceAsset,
    asset,
    observable_source_asset,
)

from etl_core import Cursor, IndexVersion
from etl_core.connect import Connections
from etl_core.errors import EtlError
from etl_core.extract import Extractor
from etl_core.lifecycle import Lifecycles
from etl_core.model import Lag
from etl_core.pipeline import SyncResult, combine
from etl_core.status import describe_versions
from orchestration.cursors import CURSOR_KEY, DagsterCursorStore, read_cursors
from orchestration.spec import SourceSpec


class SyncConfig(Config):
    max_pages: int = 0
    """Stop after this many pages (0: run to the high watermark). Catch-up lanes use a budget so
    the live lane gets its turn between chunks."""
    checkpoint_every_s: float = 5.0
    """How often a long run records its cursors as checkpoints (AssetObservations)."""
    follow_s: float = 0.0
    """Follow mode (sources with change capture): keep syncing on every commit's notification
    for this many seconds, then end; the schedule starts the next follower."""


def partition_metadata(key: str, result: SyncResult, lag: Lag) -> dict[str, Any]:
    totals = result.versions[key]
    cursor = totals.cursor
    seconds = lag.seconds_behind(key)
    by_time = cursor if isinstance(cursor, Cursor) else None
    return {
        CURSOR_KEY: MetadataValue.json(cursor.to_json() if cursor else {}),
        "cursor_text": MetadataValue.text(cursor.describe() if cursor else ""),
        "cursor_changed_at": MetadataValue.text(by_time.changed_at.isoformat() if by_time else ""),
        "cursor_key": MetadataValue.text(str(by_time.key) if by_time else ""),
        "docs_indexed": MetadataValue.int(totals.indexed),
        "docs_deleted": MetadataValue.int(totals.deleted),
        "delete_not_found": MetadataValue.int(totals.not_found),
        "stale_skipped": MetadataValue.int(totals.stale),
        "dead_letters": MetadataValue.int(totals.dead_letters),
        "lag_seconds": MetadataValue.float(-1.0 if math.isinf(seconds) else round(seconds, 3)),
        "lag_rows": MetadataValue.int(lag.rows_behind.get(key, 0)),
        # what may still arrive when it commits (it holds back nothing committed)
        "open_transactions": MetadataValue.int(len(lag.open_transactions)),
        **log_metadata(lag),
        "pages": MetadataValue.int(result.pages),
        "rows_read": MetadataValue.int(result.rows_read),
        "statements": MetadataValue.int(result.statements),
        "caught_up": MetadataValue.bool(result.caught_up),
        "lane": MetadataValue.text(",".join(result.versions)),
        "duration_s": MetadataValue.float(round(result.duration_s, 3)),
    }


def log_metadata(lag: Lag) -> dict[str, Any]:
    """The change log's upkeep, on every partition (a lagging version lets it grow)."""
    if lag.log is None:
        return {}
    age = lag.log["oldest_entry_age_s"]
    return {
        "log_bytes": MetadataValue.int(lag.log["bytes"]),
        "log_entries_estimate": MetadataValue.int(lag.log["entries_estimate"]),
        "log_oldest_entry_age_s": MetadataValue.float(-1.0 if age is None else float(age)),
    }


def trim_log(
    context: AssetExecutionContext,
    extractor: Extractor[Any],
    conns: Connections,
    versions: Sequence[IndexVersion[Any]],
) -> None:
    """Drop change-log entries every non-retired version has read. A role without DELETE on the
    log only loses the trimming: a warning, not a failed sync."""
    if extractor.source.tracking is None:
        return
    retired = Lifecycles(conns.state).retired()  # once, not once per version
    active = [v.key for v in versions if v.key not in retired]
    cursors = read_cursors(context.instance, context.asset_key, active, conns.cursors)
    try:
        deleted = extractor.trim(list(cursors.values()))
    except EtlError as exc:
        context.log.warning(str(exc))
        return
    if deleted:
        context.log.info(f"change log trimmed: {deleted} entries every version has read")


def build_index_asset(spec: SourceSpec, source_asset: SourceAsset) -> AssetsDefinition:
    source, names = spec.source, spec.names

    @asset(
        name=names.asset,
        group_name=names.group,
        partitions_def=names.partitions,
        backfill_policy=BackfillPolicy.single_run(),
        pool=names.pool,
        deps=[source_asset],
        kinds={"opensearch"},
        required_resource_keys={spec.resource_key},
        description=(
            f"OpenSearch index versions of the `{source.name}` source (read alias "
            f"`{spec.read_alias}`). One partition per version; a run over several partitions reads "
            "PostgreSQL once for all of them."
        ),
    )
    def _index(context: AssetExecutionContext, config: SyncConfig) -> None:
        keys = list(context.partition_keys)
        lane = [spec.version(k) for k in keys]
        with spec.connect(context.resources) as conns:
            store = DagsterCursorStore(
                context.instance,
                context.asset_key,
                context.log_event,
                conns.cursors,
                every_s=config.checkpoint_every_s,
            )
            extractor = conns.extractor(source)
            try:
                if config.follow_s > 0:
                    followed = conns.follow(
                        source,
                        lane,
                        window_s=config.follow_s,
                        extractor=extractor,
                        cursors=store,
                        keep_results=True,
                    )
                    result = combine(followed.results)
                    context.log.info(
                        f"followed {keys} for {config.follow_s:.0f} s: {followed.syncs} syncs, "
                        f"{followed.wakeups} wake-ups, {followed.polls} polls"
                    )
                else:
                    result = conns.sync(
                        source, lane, extractor=extractor, cursors=store, max_pages=config.max_pages or None
                    )
            finally:
                store.flush()  # acknowledged pages stay acknowledged, even when the run fails
            trim_log(context, extractor, conns, spec.versions)
            lag = extractor.lag({k: result.versions[k].cursor for k in keys})
            statuses = describe_versions(
                lane,
                cursors={k: result.versions[k].cursor for k in keys},
                lag=lag,
                lifecycles=Lifecycles(conns.state),
                dead_letters=conns.dead_letters,
                sink=conns.sink,
                alias=spec.read_alias,
                close=spec.close,
            )
        for status in statuses:
            metadata = partition_metadata(status.key, result, lag)
            metadata["lifecycle"] = MetadataValue.text(status.lifecycle.value)
            metadata["open_dead_letters"] = MetadataValue.int(status.dead_letters)
            context.add_asset_metadata(metadata, partition_key=status.key)
        context.log.info(
            f"synced {keys} in one extraction: pages={result.pages} rows={result.rows_read} "
            f"caught_up={result.caught_up} checkpoints={store.checkpoints}"
        )

    return _index


def build_source_asset(spec: SourceSpec) -> SourceAsset:
    source = spec.source

    @observable_source_asset(
        name=spec.names.source_asset,
        group_name=spec.names.group,
        required_resource_keys={spec.resource_key},
        description=f"The PostgreSQL source `{source.name}`: row count and newest change.",
    )
    def _observe(context: Any) -> ObserveResult:
        with spec.connect(context.resources) as conns:
            extractor = conns.extractor(source)
            head = extractor.head()
            rows = extractor.count()
        return ObserveResult(
            data_version=DataVersion(head or "empty"),
            metadata={"rows": MetadataValue.int(rows), "head": MetadataValue.text(head or "")},
        )

    return _observe
