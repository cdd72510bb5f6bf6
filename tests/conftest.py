"""Shared test setup: load the local services' settings when the environment has none."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load_local_env() -> None:
    """``scripts/services.sh up`` writes .services/env; honour a user's own variables first."""
    env_file = ROOT / ".services" / "env"
    if not env_file.exists():
        return
    for line in env_file.read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            os.environ.setdefault(name, shlex.split(value)[0] if value else "")


_load_local_env()
