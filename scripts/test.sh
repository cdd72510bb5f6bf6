#!/usr/bin/env bash
# The whole test suite: lint, types, unit, integration (real PostgreSQL + OpenSearch), Dagster
# orchestration and the browser test. Starts the local services if they are not up.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/bootstrap.sh
if ! command -v chromium >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
if [ -z "${SOURCE_DATABASE_URL:-}" ]; then
  scripts/services.sh up
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/pytest "$@"
