"""The OpenSearch sink: index management and ``_bulk`` with external versions and backoff."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from functools import lru_cache
from typing import Any

import orjson
from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import (
    ImproperlyConfigured,
    OpenSearchException,
    RequestError,
    SSLError,
    TransportError,
)
from opensearchpy.serializer import JSONSerializer

from etl_core.errors import ConfigError, EtlError, SinkRefused, SinkUnavailable
from etl_core.logs import event
from etl_core.model.records import Action, Outcome
from etl_core.model.versions import BACKFILL_SETTINGS, IndexVersion
from etl_core.retry import DEFAULT_BACKOFF, Backoff, call_with_retry

# Worth retrying, then failing the run: the node is busy, down, or refuses writes for now (403 is a
# write block such as the disk flood stage, or a permission: neither is the document's fault).
_TRANSIENT_STATUS = frozenset({403, 429, 500, 502, 503, 504})


class OrjsonSerializer(JSONSerializer):
    """orjson for the bulk metadata lines; bodies arrive pre-serialised and pass through."""

    def dumps(self, data: Any) -> Any:
        if isinstance(data, str | bytes):
            return data
        return orjson.dumps(data, default=self.default).decode()

    def loads(self, s: str) -> Any:
        return orjson.loads(s)


def make_client(
    url: str,
    *,
    user: str | None = None,
    password: str | None = None,
    verify_certs: bool = True,
    ca_certs: str | None = None,
    timeout: float = 30.0,
    connections: int = 4,
) -> OpenSearch:
    """A client whose own transport does not retry: :class:`OpenSearchSink` retries with backoff
    instead, so the retry budget is one number, not two multiplied. ``connections``: how many
    connections to the node are kept open, at least the writes in flight and the probes beside
    them (urllib3 keeps one by default, and would open and drop a new one for each other)."""
    auth = (user, password) if user and password else None
    return OpenSearch(
        hosts=[url],
        http_auth=auth,
        verify_certs=verify_certs,
        ca_certs=ca_certs,
        ssl_show_warn=False,
        timeout=timeout,
        max_retries=0,
        retry_on_timeout=False,
        serializer=OrjsonSerializer(),
        http_compress=False,
        pool_maxsize=connections,
    )


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, SSLError):
        return False  # a certificate problem does not heal by waiting
    if isinstance(exc, OSConnectionError):
        return True
    return isinstance(exc, TransportError) and exc.status_code in _TRANSIENT_STATUS


class _RetryableItems(Exception):
    """Some items came back 429/5xx after the helper's own 429 retries: retry just those."""

    def __init__(self, status: int) -> None:
        super().__init__(f"bulk items answered {status}")
        self.status_code = status


def _classify(action: Action, ok: bool, item: dict[str, Any]) -> Outcome | int:
    """An outcome, or the HTTP status when the item is worth retrying."""
    status = int(item.get("status", 500))
    if ok:
        return Outcome(action, "deleted" if action.op == "delete" else "indexed")
    if status == 409:
        return Outcome(action, "stale")  # external_gte refused an older write: by design
    if action.op == "delete" and status == 404:
        return Outcome(action, "not_found")  # nothing to delete is what a delete wants
    if status in _TRANSIENT_STATUS:
        return status
    error = item.get("error") or {}
    if isinstance(error, dict):
        reason = f"{error.get('type', 'error')}: {error.get('reason', '')}"
        cause = error.get("caused_by")
        if isinstance(cause, dict) and cause.get("reason"):
            reason += f" (caused by {cause.get('type')}: {cause['reason']})"
    else:
        reason = str(error)
    return Outcome(action, "failed", f"opensearch {status} {reason}"[:2000])


class OpenSearchSink:
    """Index management and bulk writes for one OpenSearch cluster.

    ``write`` runs in up to ``ETL_BULK_IN_FLIGHT`` threads at once: each call keeps its state
    to itself, and what the instance caches (indices known to exist, the node's request limit)
    is the same whichever thread fills it.
    """

    def __init__(
        self,
        client: OpenSearch,
        *,
        max_chunk_bytes: int = 5 * 1024 * 1024,
        chunk_size: int = 5000,
        backoff: Backoff = DEFAULT_BACKOFF,
        describe: str = "OpenSearch",
    ) -> None:
        self.client = client
        self.max_chunk_bytes = max_chunk_bytes
        self.chunk_size = chunk_size
        self.backoff = backoff
        self.describe = describe  # a URL without credentials, for messages
        # What this sink has checked already, so a follower syncing many times a second does not
        # ask again each time: indices that exist, and indices with their serving settings on.
        self._ready: set[str] = set()
        self._serving: set[str] = set()
        self._max_content_length: str | None = None

    def _call(self, what: str, fn: Any) -> Any:
        """``fn`` with the sink's one retry budget; what escapes is one of the project's errors."""
        try:
            return call_with_retry(
                fn, retry_on=_transient_or_items, backoff=self.backoff, log_as="sink_retry", what=what
            )
        except (OpenSearchException, _RetryableItems) as exc:
            raise self._failure(exc, what) from None

    def _failure(self, exc: OpenSearchException | _RetryableItems, what: str) -> EtlError:
        """An opensearch-py exception as the project's error that says what to do about it."""
        if isinstance(exc, SSLError):
            return ConfigError(
                f"{self.describe}: the TLS handshake failed while {what}. Set OPENSEARCH_CA_CERTS to "
                "the CA bundle that signed the node's certificate (or OPENSEARCH_VERIFY_CERTS=false "
                "for a test node)"
            )
        status = getattr(exc, "status_code", None)
        if status == 401:
            return ConfigError(
                f"{self.describe} refused the credentials (401) while {what}: check "
                "OPENSEARCH_USER and OPENSEARCH_PASSWORD"
            )
        if isinstance(exc, ImproperlyConfigured):
            return ConfigError(f"{self.describe}: the client is misconfigured while {what}: {exc}")
        if isinstance(exc, OSConnectionError) and not isinstance(exc, SSLError):
            return SinkUnavailable(
                f"{self.describe} could not be reached while {what} ({self.backoff.attempts} attempts: "
                f"{_cause(exc)}). Check that the node is up and OPENSEARCH_URL points at it; no "
                "cursor was moved."
            )
        if _transient_or_items(exc):
            return SinkUnavailable(
                f"{self.describe} did not accept {what} after {self.backoff.attempts} attempts "
                f"({type(exc).__name__}, status {status or 'n/a'}). Check that "
                "the node is up and OPENSEARCH_URL points at it; no cursor was moved."
            )
        reason = _reason(exc) if isinstance(exc, TransportError) else type(exc).__name__
        return SinkRefused(
            f"{self.describe} refused {what} (status {status or 'n/a'}: {reason}); retrying will "
            "not help. No cursor was moved."
        )

    def _limit(self) -> str:
        """The node's request limit, for a too-large document's dead letter (asked once)."""
        if self._max_content_length is None:
            try:
                settings = self.client.cluster.get_settings(
                    include_defaults=True, filter_path="*.http.max_content_length"
                )
                found = [  # a cluster-level value overrides the node's default
                    settings[level]["http"]["max_content_length"]
                    for level in ("transient", "persistent", "defaults")
                    if level in settings
                ]
                limit = f"the node's http.max_content_length is {found[0]}"
            except (OpenSearchException, LookupError):
                limit = "the node's http.max_content_length could not be read"
            self._max_content_length = limit + "; a proxy in front of it may allow less"
        return self._max_content_length

    def ensure_index(self, version: IndexVersion[Any]) -> bool:
        """Create the version's index if missing (idempotent); new indices start in backfill mode."""
        return version.key in self.ensure_indices([version])

    def ensure_indices(self, versions: Sequence[IndexVersion[Any]]) -> set[str]:
        """Create the missing indices of ``versions``, all or none; returns the keys created.

        OpenSearch has no dry run for index creation (a probe index costs what the real one
        does), so a refusal rolls back: the indices this call created are deleted again before
        the error is raised, and a fixed declaration starts from a clean slate.
        """
        created: list[IndexVersion[Any]] = []
        try:
            for version in versions:
                if version.index in self._ready:
                    continue
                exists = self._call(
                    f"checking whether index {version.index} exists",
                    lambda v=version: self.client.indices.exists(index=v.index),
                )
                if not exists and self._call(
                    f"creating index {version.index}", lambda v=version: self._create(v)
                ):
                    created.append(version)
        except EtlError:
            # any failure, a refused setting or a node gone midway: take back what this call made,
            # and let a failing roll-back be logged, never hide why creation failed
            for version in created:
                try:
                    self._call(
                        f"rolling back index {version.index}",
                        lambda v=version: self.client.indices.delete(index=v.index, ignore=[404]),
                    )
                    event("index_rolled_back", version=version.key, index=version.index)
                except EtlError as failure:
                    event(
                        "index_roll_back_failed", version=version.key, index=version.index, error=str(failure)
                    )
            raise
        self._ready.update(v.index for v in versions)
        return {v.key for v in created}

    def _create(self, version: IndexVersion[Any]) -> bool:
        settings = {
            **version.settings,
            "index": {**dict(version.settings.get("index", {})), **BACKFILL_SETTINGS["index"]},
        }
        try:
            self.client.indices.create(
                index=version.index, body={"settings": settings, "mappings": version.mappings}
            )
        except RequestError as exc:
            if exc.error == "resource_already_exists_exception":
                return False
            raise ConfigError(
                f"version {version.key!r}: OpenSearch refused index {version.index!r}: "
                f"{exc.error}: {_reason(exc)}. Fix the version's mappings or settings."
            ) from None
        event("index_created", version=version.key, index=version.index)
        return True

    def finish_backfill(
        self, versions: Sequence[IndexVersion[Any]], changed: Collection[str] | None = None
    ) -> None:
        """Restore serving settings (refresh interval, replicas) where the backfill ones are
        still on, then refresh, in one request, the indices that may hold what is not
        searchable yet, so that what a sync wrote is searchable when it returns.

        ``changed``: the keys of the versions this sync wrote to (None: every one). An index
        whose serving settings this sink has already seen and that the sync did not write to has
        nothing new to show and is not refreshed. One request for a lane's indices, not one
        each after the other: an incremental sync of three versions spent a quarter or more of
        its time in its refreshes (benchmarks/README.md, issue 22's second session)."""
        if not versions:
            return

        def restore() -> None:
            stale: list[str] = []
            for version in versions:
                if version.index in self._serving:
                    if changed is None or version.key in changed:
                        stale.append(version.index)
                    continue
                wanted = version.serving_settings
                current = self.client.indices.get_settings(index=version.index)
                index = current[version.index]["settings"]["index"]
                if (
                    index.get("refresh_interval") != wanted["refresh_interval"]
                    or int(index.get("number_of_replicas", 1)) != wanted["number_of_replicas"]
                ):
                    self.client.indices.put_settings(index=version.index, body={"index": wanted})
                    event("backfill_finished", version=version.key, index=version.index, **wanted)
                stale.append(version.index)
            if stale:
                self.client.indices.refresh(index=",".join(stale))
            # only now: a retry after a failed refresh must refresh these again
            self._serving.update(v.index for v in versions)

        self._call(f"settings of {', '.join(v.index for v in versions)}", restore)

    def fetch(self, index: str, ids: Sequence[str]) -> dict[str, tuple[int, Any]]:
        """``{id: (version, _source)}`` of the ids that exist (one ``_mget``)."""
        if not ids:
            return {}
        body = self._call(
            f"reading {len(ids)} documents of {index}",
            lambda: self.client.mget(index=index, body={"ids": list(ids)}),
        )
        return {d["_id"]: (int(d["_version"]), d["_source"]) for d in body["docs"] if d.get("found")}

    def scan_ids(self, index: str, batch: int = 1000) -> Iterator[list[tuple[str, int]]]:
        """Every document id and version of an index, in batches, in index order.

        A scroll sorted on ``_doc``: a consistent snapshot, memory stays flat, and nothing is
        sorted on ``_id`` (whose fielddata OpenSearch deprecates). A point in time with
        ``search_after`` would need a unique sort value, and ``_doc`` is unique only per shard.
        """
        hits = helpers.scan(
            self.client,
            index=index,
            query={"query": {"match_all": {}}, "_source": False, "version": True},
            size=batch,
            scroll="2m",
            preserve_order=False,
        )
        page: list[tuple[str, int]] = []
        try:
            for hit in hits:
                page.append((hit["_id"], int(hit["_version"])))
                if len(page) >= batch:
                    yield page
                    page = []
        except OpenSearchException as exc:
            raise self._failure(exc, f"scanning {index}") from None
        if page:
            yield page

    def count(self, index: str) -> int:
        def refresh_and_count() -> int:
            self.client.indices.refresh(index=index)
            return int(self.client.count(index=index)["count"])

        return int(self._call(f"counting {index}", refresh_and_count))

    def alias_targets(self, alias: str) -> list[str]:
        """The indices an alias names (none if the alias does not exist)."""

        def targets() -> list[str]:
            if not self.client.indices.exists_alias(name=alias):
                return []
            return sorted(self.client.indices.get_alias(name=alias))

        return list(self._call(f"reading alias {alias}", targets))

    def point_alias(self, alias: str, index: str) -> list[str]:
        """Point ``alias`` at ``index`` alone, in one atomic ``_aliases`` request; readers see
        the old index or the new one, never neither. Returns the indices it named before."""
        before = self.alias_targets(alias)
        actions: list[dict[str, Any]] = [
            {"remove": {"index": old, "alias": alias}} for old in before if old != index
        ]
        actions.append({"add": {"index": index, "alias": alias}})
        self._call(
            f"pointing alias {alias} at {index}",
            lambda: self.client.indices.update_aliases(body={"actions": actions}),
        )
        event("alias_swapped", alias=alias, index=index, previous=before)
        return before

    def delete_index(self, index: str) -> bool:
        if not self._call(f"looking up {index}", lambda: self.client.indices.exists(index=index)):
            return False
        self._call(f"deleting {index}", lambda: self.client.indices.delete(index=index, ignore=[404]))
        self._ready.discard(index)
        self._serving.discard(index)
        event("index_deleted", index=index)
        return True

    def existing(self, index: str, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` have a document (one realtime ``_mget``, no sources)."""
        if not ids:
            return set()
        body = self._call(
            f"probing {len(ids)} documents of {index}",
            lambda: self.client.mget(
                index=index, body={"ids": list(ids)}, params={"_source": "false", "realtime": "true"}
            ),
        )
        return {d["_id"] for d in body["docs"] if d.get("found")}

    def write(self, actions: Sequence[Action]) -> list[Outcome]:
        """Outcomes for ``actions``, one each, in no fixed order.

        Requests are built here, not by the client's bulk helpers, so that ``max_chunk_bytes`` is
        a true bound: a request with several actions never exceeds it, and a document larger than
        it travels alone. A request the cluster refuses as too large (413: its
        ``http.max_content_length``, or a proxy's limit) is split in halves until the one
        document that is too large stands alone; that one becomes a failed outcome (a dead
        letter), the rest proceeds. Retries resend only what has no final answer yet (429/5xx
        items, or everything after a connection drop); external versions make a resend harmless.
        """
        outcomes: list[Outcome] = []
        # A document too large to share a request is encoded only when its request is sent, and
        # dropped right after: one oversized row then costs its body once per version plus the
        # one request in flight, not every version's request at once (benchmarks/huge_row.py).
        pending = {
            (a.index_name, a.id): (a, _encode(a) if _body_size(a) < self.max_chunk_bytes else None)
            for a in actions
        }

        def attempt() -> None:
            status = 0
            for chunk in _chunks(list(pending.values()), self.max_chunk_bytes, self.chunk_size):
                for result in self._send(chunk):
                    if isinstance(result, int):
                        status = result  # stays pending
                    else:
                        outcomes.append(result)
                        del pending[(result.action.index_name, result.action.id)]
            if pending:
                raise _RetryableItems(status)

        self._call(f"a bulk of {len(actions)} actions", attempt)
        return outcomes

    def _send(self, chunk: list[tuple[Action, bytes | None]]) -> list[Outcome | int]:
        """One ``_bulk`` request, its items' outcomes in the chunk's order; on 413, the two halves
        of it, down to single documents.

        The response is filtered to each item's status and error (``filter_path``): parsing the
        full answer (index, id, shards, sequence numbers of every item) cost more Python time per
        document than building the request. Items come back in the order they were sent; when
        the answer says no item failed (``errors``), none is classified one by one.
        """
        try:
            response = self.client.bulk(body=request_body(chunk), filter_path=BULK_ANSWER_FIELDS)
        except TransportError as exc:
            if exc.status_code != 413:
                raise
            if len(chunk) > 1:
                half = len(chunk) // 2
                return self._send(chunk[:half]) + self._send(chunk[half:])
            action, line = chunk[0]
            size = _body_size(action) if line is None else len(line)
            return [
                Outcome(
                    action,
                    "failed",
                    f"too large: the {action.op} request for this document is {size} bytes and "
                    f"{self.describe} refused it (413 Request Entity Too Large; {self._limit()}). "
                    "Shrink the document in the version's transform, or raise the limit",
                )
            ]
        items = response.get("items") if isinstance(response, dict) else None
        if not isinstance(items, list) or len(items) != len(chunk):
            raise SinkRefused(
                f"{self.describe} answered a bulk of {len(chunk)} actions with "
                f"{len(items) if isinstance(items, list) else 'no'} items (is OPENSEARCH_URL an "
                "OpenSearch node, not a proxy's error page?); no cursor was moved"
            )
        if response.get("errors") is False:  # every item succeeded: no item needs reading
            return [Outcome(a, "deleted" if a.op == "delete" else "indexed") for a, _ in chunk]
        results: list[Outcome | int] = []
        for (action, _), item in zip(chunk, items, strict=True):
            info = next(iter(item.values()))
            status = int(info.get("status", 500))
            results.append(_classify(action, 200 <= status < 300, info))
        return results  # an int for an item still to send: its retryable status


# What a bulk answer needs to say: whether any item failed, and each item's status and error.
BULK_ANSWER_FIELDS = "errors,items.*.status,items.*.error"


def _encode(action: Action) -> bytes:
    """The action's lines of a ``_bulk`` body: metadata, then the document (if any)."""
    line = _meta_head(action.op, action.index_name) + orjson.dumps(action.id)
    if action.external_version is not None:
        line += b',"version":%d,"version_type":"external_gte"' % action.external_version
    line += b"}}\n"
    return line if action.body is None else b"".join((line, action.body, b"\n"))


def request_body(chunk: Sequence[tuple[Action, bytes | None]]) -> bytes:
    """One ``_bulk`` request's body: the chunk's lines, an oversized document's built now."""
    return b"".join(_encode(a) if line is None else line for a, line in chunk)


def _body_size(action: Action) -> int:
    """About the size of the action's lines (the document's, plus room for the metadata)."""
    return 200 + (0 if action.body is None else len(action.body))


@lru_cache(maxsize=256)
def _meta_head(op: str, index: str) -> bytes:
    """``{"<op>":{"_index":"<index>","_id":`` : the same for every action of a version."""
    return b'{"%s":{"_index":%s,"_id":' % (op.encode(), orjson.dumps(index))


def _chunks(
    encoded: list[tuple[Action, bytes | None]], max_bytes: int, max_actions: int
) -> Iterator[list[tuple[Action, bytes | None]]]:
    """Greedy requests of at most ``max_bytes`` and ``max_actions``; an action larger than
    ``max_bytes`` on its own (not encoded yet) makes a request of one."""
    chunk: list[tuple[Action, bytes | None]] = []
    size = 0
    for item in encoded:
        n = _body_size(item[0]) if item[1] is None else len(item[1])
        if chunk and (size + n > max_bytes or len(chunk) >= max_actions):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += n
    if chunk:
        yield chunk


def _transient_or_items(exc: BaseException) -> bool:
    return isinstance(exc, _RetryableItems) or _transient(exc)


def _reason(exc: TransportError) -> str:
    info = exc.info if isinstance(exc.info, dict) else {}
    err = info.get("error", {})
    return str(err.get("reason", exc.error)) if isinstance(err, dict) else str(err)


def _cause(exc: OSConnectionError) -> str:
    """Why a connection failed, in words (refused, timed out, name not found), without the URL."""
    text = str(exc.info if getattr(exc, "info", None) else exc).lower()
    for marker, cause in (
        ("refused", "connection refused"),
        ("timed out", "timed out"),
        ("name or service not known", "host name not found"),
        ("nodename nor servname", "host name not found"),
        ("reset by peer", "connection reset"),
    ):
        if marker in text:
            return cause
    return type(exc).__name__
