#!/usr/bin/env bash
# Dagster as two long-running services, the way production runs it (`dagster dev` is for a laptop):
#   scripts/serve.sh webserver   the UI and its GraphQL API (HOST, PORT; default 127.0.0.1:3000)
#   scripts/serve.sh daemon      schedules, sensors and the run queue
#   scripts/serve.sh celery-worker   a worker of the celery executor (one step at a time; the
#                                    broker from CELERY_BROKER_URL, default the local Redis)
# Both need DAGSTER_HOME (a directory holding dagster.yaml) and the variables of the README's
# Configuration table. deploy/systemd/ has units that call this; tests/ui starts both this way.
#
# Which code to serve: the project's workspace.yaml by default; your own with a second argument
# or the environment, without editing the project:
#   scripts/serve.sh webserver myshop.definitions     a module (imported from the directory you
#                                                      start in: DAGSTER_WORKING_DIRECTORY)
#   scripts/serve.sh daemon /etc/myshop/workspace.yaml
#   DAGSTER_MODULE=myshop.definitions scripts/serve.sh daemon      (or DAGSTER_WORKSPACE=…)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
START="$(pwd)"
code="${2:-${DAGSTER_MODULE:-${DAGSTER_WORKSPACE:-$ROOT/workspace.yaml}}}"
case "$code" in
  *.yaml | *.yml)
    [ "${code#/}" != "$code" ] || code="$START/$code"
    [ -f "$code" ] || { echo "serve: workspace $code does not exist" >&2; exit 2; }
    target=(-w "$code") ;;
  *) target=(-m "$code" -d "${DAGSTER_WORKING_DIRECTORY:-$START}") ;;
esac
cd "$ROOT"
: "${DAGSTER_HOME:?set DAGSTER_HOME to a directory holding dagster.yaml}"
if [ ! -f "$DAGSTER_HOME/dagster.yaml" ]; then
  echo "serve: $DAGSTER_HOME/dagster.yaml is missing: copy or link $ROOT/dagster.yaml there" >&2
  exit 1
fi
case "${1:-}" in
  webserver) exec .venv/bin/dagster-webserver "${target[@]}" -h "${HOST:-127.0.0.1}" -p "${PORT:-3000}" ;;
  daemon) exec .venv/bin/dagster-daemon run "${target[@]}" ;;
  celery-worker)
    broker="${CELERY_BROKER_URL:-redis://127.0.0.1:6379/0}"
    config="$DAGSTER_HOME/celery-worker.yaml"  # the executor's config block; JSON is YAML
    printf '{"execution": {"config": {"broker": "%s", "backend": "%s"}}}\n' "$broker" "$broker" >"$config"
    export PATH="$ROOT/.venv/bin:$PATH"  # dagster-celery starts `celery`
    exec dagster-celery worker start -A dagster_celery.app -y "$config" \
      -n "${WORKER_NAME:-etl-$(hostname)-$$}" -- --concurrency=1 --prefetch-multiplier=1 ;;
  *) echo "usage: scripts/serve.sh webserver|daemon|celery-worker [MODULE | WORKSPACE.yaml]" >&2; exit 2 ;;
esac
