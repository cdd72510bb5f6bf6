#!/usr/bin/env bash
# Bring up PostgreSQL + OpenSearch, load the demo catalogue and the demo forum (two sources in one
# code location), and start Dagster (UI on :3000) with their planner sensors and schedules running.
#   ROWS=50000     demo rows to generate on first start
#   CHURN=1        keep changing the catalogue in the background (inserts, updates, deletes)
#   PORT=3000      the Dagster UI port
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/bootstrap.sh
scripts/services.sh up
set -a
# shellcheck disable=SC1091
. .services/env
set +a
.venv/bin/python -m catalogue init
if [ "$(.venv/bin/python -c 'from etl_core.settings import Settings, make_engine
from sqlalchemy import text
e = make_engine(Settings.from_env().source_url)
with e.connect() as c: print(c.execute(text("SELECT count(*) FROM products")).scalar())')" = 0 ]; then
  .venv/bin/python -m catalogue generate --rows "${ROWS:-50000}" --seed 42
fi
.venv/bin/python -m forum init --posts "${POSTS:-2000}"
if [ "${CHURN:-0}" = 1 ]; then
  .venv/bin/python -m catalogue churn --rate 5 --seconds 86400 >/dev/null 2>&1 &
  trap 'kill $! 2>/dev/null || true' EXIT
fi
export DAGSTER_HOME="$ROOT/.dagster_home"
mkdir -p "$DAGSTER_HOME"
ln -sf "$ROOT/dagster.yaml" "$DAGSTER_HOME/dagster.yaml"
exec .venv/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p "${PORT:-3000}"
