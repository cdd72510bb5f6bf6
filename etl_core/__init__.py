"""Framework-free core: keep several OpenSearch index versions in sync with one PostgreSQL source.

No Dagster here, ever: the orchestration layer wraps these functions and protocols.
"""

from etl_core.cursor import Cursor, LogCursor
from etl_core.errors import (
    ConfigError,
    EtlError,
    ServiceUnavailable,
    SinkRefused,
    SinkUnavailable,
    SourceRefused,
    SourceUnavailable,
    StateUnavailable,
)
from etl_core.extract import Extractor
from etl_core.lanes import LaneBusy
from etl_core.pipeline import SyncResult, sync
from etl_core.sink import OpenSearchSink, make_client
from etl_core.source import Source
from etl_core.stores import PostgresCursorStore, PostgresDeadLetterStore, StateSchema
from etl_core.tracking import Hop, Tracked, Tracking
from etl_core.versions import IndexVersion, Lifecycle, validate_versions

__all__ = [
    "ConfigError",
    "Cursor",
    "EtlError",
    "Extractor",
    "Hop",
    "IndexVersion",
    "LaneBusy",
    "Lifecycle",
    "LogCursor",
    "OpenSearchSink",
    "PostgresCursorStore",
    "PostgresDeadLetterStore",
    "ServiceUnavailable",
    "SinkRefused",
    "SinkUnavailable",
    "Source",
    "SourceRefused",
    "SourceUnavailable",
    "StateSchema",
    "StateUnavailable",
    "SyncResult",
    "Tracked",
    "Tracking",
    "make_client",
    "sync",
    "validate_versions",
]
