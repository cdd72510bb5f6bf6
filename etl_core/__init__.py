"""Framework-free core: keep several OpenSearch index versions in sync with one PostgreSQL source.

No Dagster here, ever: the orchestration layer wraps these functions and protocols.
"""

from etl_core.capture.triggers import Hop, Tracked, Tracking
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
from etl_core.flow.pipeline import SyncResult, sync
from etl_core.model.cursor import Cursor, LogCursor
from etl_core.model.source import Source
from etl_core.model.versions import IndexVersion, Lifecycle, validate_versions
from etl_core.read.extract import Extractor
from etl_core.state.lanes import LaneBusy
from etl_core.state.stores import PostgresCursorStore, PostgresDeadLetterStore, StateSchema
from etl_core.write.sink import OpenSearchSink, make_client

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
