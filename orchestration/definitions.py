"""The code location ``workspace.yaml`` loads: the demo catalogue and its versions.

Its readers query the alias ``products`` (``CATALOGUE.alias``). ``ETL_INDEX_PREFIX`` puts every
index (and the alias) under a prefix, for a cluster shared with other projects or tests.
"""

from catalogue.source import CATALOGUE
from catalogue.versions import VERSIONS
from orchestration.project import build_definitions

defs = build_definitions(CATALOGUE, VERSIONS)
