"""The sources of the default code location, one folder each with a ``defs.yaml`` that declares a
:class:`orchestration.component.SyncedSource` (``dg list defs`` shows what they build)."""
