#!/usr/bin/env bash
# The whole test suite: lint, types, unit, integration (real PostgreSQL + OpenSearch), Dagster
# orchestration and the browser test. Starts the local services if they are not up.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/bootstrap.sh
# the browser test drives Debian's Chromium; the TLS test makes a certificate with openssl
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ -z "${SOURCE_DATABASE_URL:-}" ]; then
  scripts/services.sh up
  # for dg below (pytest reads the same file itself): the local services' settings
  set -a
  # shellcheck disable=SC1091
  . .services/env
  set +a
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# every defs.yaml against the component's schema, and the code location loads from them
.venv/bin/dg check defs
.venv/bin/pytest "$@"
