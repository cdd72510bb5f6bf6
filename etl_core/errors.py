"""The project's own exceptions: every error a user can cause names the thing and the fix."""

from __future__ import annotations


class EtlError(Exception):
    """Base class, so callers (and Dagster) can tell our failures from bugs."""


class ConfigError(EtlError):
    """A source, version or setting is wrong. Raised at load time, before anything is written."""


class ServiceUnavailable(EtlError):
    """A service did not answer within its retry budget. No cursor was moved."""


class SourceUnavailable(ServiceUnavailable):
    """PostgreSQL could not be read."""


class SinkUnavailable(ServiceUnavailable):
    """OpenSearch could not be written."""


class SinkRefused(EtlError):
    """OpenSearch answered, but refused a request that retrying cannot fix (a bad query, a
    missing index). No cursor was moved."""


class SourceRefused(EtlError):
    """PostgreSQL answered, but refused a statement (a SQL error in the source's selectable, a
    missing table or privilege). No cursor was moved."""


class StateUnavailable(ServiceUnavailable):
    """The state schema (cursors, dead letters) could not be read or written."""
