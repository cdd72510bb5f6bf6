"""The code location ``workspace.yaml`` loads: the two demo sources, the catalogue and the forum,
each with its versions, side by side (every object is named after its source).

Each source is declared in ``orchestration/defs/<name>/defs.yaml`` by the component
:class:`orchestration.component.SyncedSource`, which calls ``build_definitions``; this module
loads that folder (as ``dg check defs`` and ``dg list defs`` do, through ``[tool.dg]`` in
``pyproject.toml``). It does not need the ``pyproject.toml`` itself, so an installed copy of the
project loads the same way.

Readers query the aliases ``products`` (``CATALOGUE.alias``) and ``posts`` (``FORUM.alias``).
``ETL_INDEX_PREFIX`` puts every index (and the aliases) under a prefix, for a cluster shared with
other projects or tests.
"""

from pathlib import Path

from dagster import ComponentTree

import orchestration.defs

defs = ComponentTree.from_module(
    defs_module=orchestration.defs, project_root=Path(__file__).resolve().parent.parent
).build_defs()
