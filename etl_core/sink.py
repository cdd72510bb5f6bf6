"""The OpenSearch sink: index management and ``_bulk`` with external versions and backoff."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import RequestError, SSLError, TransportError
from opensearchpy.serializer import JSONSerializer

from etl_core.errors import ConfigError, SinkUnavailable
from etl_core.logs import event
from etl_core.model import Action, Outcome
from etl_core.retry import DEFAULT_BACKOFF, Backoff, call_with_retry
from etl_core.versions import BACKFILL_SETTINGS, IndexVersion

# Worth retrying, then failing the run: the node is busy, down, or refuses writes for now (403 is a
# write block such as the disk flood stage, or a permission: neither is the document's fault).
_TRANSIENT_STATUS = frozenset({403, 429, 500, 502, 503, 504})


class OrjsonSerializer(JSONSerializer):
    """orjson for the bulk metadata lines; bodies arrive pre-serialised and pass through."""

    def dumps(self, data: Any) -> Any:
        if isinstance(data, str):
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
) -> OpenSearch:
    """A client whose own transport does not retry: :class:`OpenSearchSink` retries with backoff
    instead, so the retry budget is one number, not two multiplied."""
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


def _expand(action: Action) -> tuple[dict[str, Any], str | None]:
    meta: dict[str, Any] = {"_index": action.index_name, "_id": action.id}
    if action.external_version is not None:
        meta["version"] = action.external_version
        meta["version_type"] = "external_gte"
    return {action.op: meta}, action.body


def _classify(action: Action, ok: bool, item: dict[str, Any]) -> Outcome | int:
    """An outcome, or the HTTP status when the item is worth retrying."""
    status = int(item.get("status", 500))
    if ok:
        return Outcome(action, "deleted" if action.op == "delete" else "indexed")
    if status == 409:
        return Outcome(action, "stale")  # external_gte refused an older write: by design
    if action.op == "delete" and status == 404:
        return Outcome(action, "deleted")  # nothing to delete is what a delete wants
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
        self.requests = 0

    def _call(self, what: str, fn: Any) -> Any:
        try:
            return call_with_retry(
                fn, retry_on=_transient_or_items, backoff=self.backoff, log_as="sink_retry", what=what
            )
        except SSLError:
            raise ConfigError(
                f"{self.describe}: the TLS handshake failed while {what}. Set OPENSEARCH_CA_CERTS to "
                "the CA bundle that signed the node's certificate (or OPENSEARCH_VERIFY_CERTS=false "
                "for a test node)"
            ) from None
        except (TransportError, _RetryableItems) as exc:
            if exc.status_code == 401:
                raise ConfigError(
                    f"{self.describe} refused the credentials (401) while {what}: check "
                    "OPENSEARCH_USER and OPENSEARCH_PASSWORD"
                ) from None
            if not _transient_or_items(exc):
                raise
            raise SinkUnavailable(
                f"{self.describe} did not accept {what} after {self.backoff.attempts} attempts "
                f"({type(exc).__name__}, status {getattr(exc, 'status_code', 'n/a')}). Check that "
                "the node is up and OPENSEARCH_URL points at it; no cursor was moved."
            ) from None

    def ensure_index(self, version: IndexVersion[Any]) -> bool:
        """Create the version's index if missing (idempotent); new indices start in backfill mode."""

        def create() -> bool:
            if self.client.indices.exists(index=version.index):
                return False
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

        return bool(self._call(f"creating index {version.index}", create))

    def finish_backfill(self, version: IndexVersion[Any]) -> None:
        """Restore serving settings (refresh, replicas) if the backfill ones are still on, and
        refresh so that what was just loaded is searchable."""

        def restore() -> None:
            wanted = version.serving_settings
            current = self.client.indices.get_settings(index=version.index)
            index = current[version.index]["settings"]["index"]
            if (
                index.get("refresh_interval") != wanted["refresh_interval"]
                or int(index.get("number_of_replicas", 1)) != wanted["number_of_replicas"]
            ):
                self.client.indices.put_settings(index=version.index, body={"index": wanted})
                event("backfill_finished", version=version.key, index=version.index, **wanted)
            self.client.indices.refresh(index=version.index)

        self._call(f"settings of {version.index}", restore)

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
        """Every document id and version of an index, in batches: a point in time and
        ``search_after`` (sorted by ``_id``), so the walk is consistent and memory stays flat."""
        pit = self._call(
            "opening a point in time", lambda: self.client.create_pit(index=index, keep_alive="2m")
        )["pit_id"]
        try:
            after: list[Any] | None = None
            while True:
                body: dict[str, Any] = {
                    "size": batch,
                    "_source": False,
                    "version": True,
                    "pit": {"id": pit, "keep_alive": "2m"},
                    "sort": [{"_id": "asc"}],
                }
                if after is not None:
                    body["search_after"] = after
                hits = self._call(f"scanning {index}", lambda b=body: self.client.search(body=b))["hits"][
                    "hits"
                ]
                if not hits:
                    return
                yield [(h["_id"], int(h["_version"])) for h in hits]
                after = hits[-1]["sort"]
        finally:
            self.client.delete_pit(body={"pit_id": [pit]}, ignore=[404])

    def count(self, index: str) -> int:
        self.client.indices.refresh(index=index)
        return int(self._call(f"counting {index}", lambda: self.client.count(index=index))["count"])

    def alias_targets(self, alias: str) -> list[str]:
        """The indices an alias names (none if the alias does not exist)."""
        if not self.client.indices.exists_alias(name=alias):
            return []
        return sorted(self.client.indices.get_alias(name=alias))

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
        if not self.client.indices.exists(index=index):
            return False
        self._call(f"deleting {index}", lambda: self.client.indices.delete(index=index))
        event("index_deleted", index=index)
        return True

    def write(self, actions: Sequence[Action]) -> list[Outcome]:
        """One bulk stream for all actions; an outcome per action, in no fixed order.

        Retries resend only what has no final answer yet (429/5xx items, or everything after a
        connection drop); external versions make a resend harmless either way.
        """
        outcomes: list[Outcome] = []
        pending = {(a.index_name, a.id): a for a in actions}

        def attempt() -> None:
            self.requests += 1
            status = 0
            for ok, info in helpers.streaming_bulk(
                self.client,
                list(pending.values()),
                chunk_size=self.chunk_size,
                max_chunk_bytes=self.max_chunk_bytes,
                expand_action_callback=_expand,
                raise_on_error=False,
                raise_on_exception=True,
                max_retries=2,
                initial_backoff=1,
                max_backoff=10,
            ):
                item = next(iter(info.values()))
                key = (item["_index"], item["_id"])
                result = _classify(pending[key], ok, item)
                if isinstance(result, int):
                    status = result  # stays pending
                else:
                    outcomes.append(result)
                    del pending[key]
            if pending:
                raise _RetryableItems(status)

        self._call(f"a bulk of {len(actions)} actions", attempt)
        return outcomes


def _transient_or_items(exc: BaseException) -> bool:
    return isinstance(exc, _RetryableItems) or _transient(exc)


def _reason(exc: TransportError) -> str:
    info = exc.info if isinstance(exc.info, dict) else {}
    err = info.get("error", {})
    return str(err.get("reason", exc.error)) if isinstance(err, dict) else str(err)
