"""The code location ``workspace.yaml`` loads: the demo catalogue and its versions."""

from catalogue.source import CATALOGUE
from catalogue.versions import VERSIONS
from orchestration.project import build_definitions

defs = build_definitions(CATALOGUE, VERSIONS)
