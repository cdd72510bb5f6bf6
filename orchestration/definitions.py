"""The code location ``workspace.yaml`` loads: the two demo sources, the catalogue and the forum,
each with its versions, side by side (every object is named after its source).

Readers query the aliases ``products`` (``CATALOGUE.alias``) and ``posts`` (``FORUM.alias``).
``ETL_INDEX_PREFIX`` puts every index (and the aliases) under a prefix, for a cluster shared with
other projects or tests.
"""

from dagster import Definitions

from catalogue.source import CATALOGUE
from catalogue.versions import VERSIONS
from forum.source import FORUM
from forum.versions import VERSIONS as FORUM_VERSIONS
from orchestration.project import build_definitions

defs = Definitions.merge(build_definitions(CATALOGUE, VERSIONS), build_definitions(FORUM, FORUM_VERSIONS))
