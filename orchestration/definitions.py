"""The code location ``workspace.yaml`` loads: the demo catalogue and its versions.

``ETL_INDEX_PREFIX`` puts every index under a prefix, for a cluster shared with other projects
(or tests).
"""

import dataclasses
import os

from catalogue.source import CATALOGUE
from catalogue.versions import VERSIONS
from orchestration.project import build_definitions

_prefix = os.environ.get("ETL_INDEX_PREFIX", "")
defs = build_definitions(CATALOGUE, [dataclasses.replace(v, index=f"{_prefix}{v.index}") for v in VERSIONS])
