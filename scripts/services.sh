#!/usr/bin/env bash
# Local PostgreSQL 15 + OpenSearch 2.x for development, tests and CI.
#
#   scripts/services.sh up       install what is missing, start both, wait until healthy
#   scripts/services.sh status   exit 0 only if both answer
#   scripts/services.sh down     stop both (data is kept)
#   scripts/services.sh env      print the export lines for the local services
#   scripts/services.sh stop-opensearch | start-opensearch   (fault-injection tests)
#
# Everything lives under .services/ (git-ignored). Both servers run as the unprivileged user
# $SERVICES_USER, because OpenSearch (and PostgreSQL) refuse to run as root. The database password
# is generated on first `up` and kept in .services/env (mode 600), never in the repository.
# Users with their own servers skip this script and set SOURCE_DATABASE_URL, DAGSTER_PG_* and
# OPENSEARCH_URL themselves.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/.services"
SERVICES_USER="${SERVICES_USER:-etl}"
PG_PORT="${PG_PORT:-5432}"
OS_PORT="${OS_PORT:-9200}"
OS_VERSION="${OS_VERSION:-2.19.6}"
OS_HEAP="${OS_HEAP:-1g}"
PG_BIN="/usr/lib/postgresql/15/bin"
PG_DATA="$DIR/pg/data"
OS_HOME="$DIR/opensearch/opensearch-$OS_VERSION"
OS_DATA="$DIR/opensearch/data"
ENV_FILE="$DIR/env"

log() { printf 'services: %s\n' "$*" >&2; }
as_user() { if [ "$(id -u)" = 0 ]; then runuser -u "$SERVICES_USER" -- "$@"; else "$@"; fi; }

ensure_user() {
  [ "$(id -u)" = 0 ] || return 0
  id "$SERVICES_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$SERVICES_USER"
}

ensure_packages() {
  local missing=()
  [ -x "$PG_BIN/postgres" ] || missing+=(postgresql-15)
  command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  command -v unzip >/dev/null || missing+=(unzip)
  command -v curl >/dev/null || missing+=(curl)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

ensure_env_file() {
  mkdir -p "$DIR"
  [ -f "$ENV_FILE" ] && return 0
  local pw
  pw="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
  umask 077
  cat >"$ENV_FILE" <<ENV
# Written by scripts/services.sh on first start. Local development only.
export SOURCE_DATABASE_URL="postgresql+psycopg://etl:$pw@127.0.0.1:$PG_PORT/catalog"
export STATE_DATABASE_URL="postgresql+psycopg://etl:$pw@127.0.0.1:$PG_PORT/catalog"
export DAGSTER_PG_HOST=127.0.0.1
export DAGSTER_PG_PORT=$PG_PORT
export DAGSTER_PG_USER=etl
export DAGSTER_PG_PASSWORD="$pw"
export DAGSTER_PG_DB=dagster
export OPENSEARCH_URL="http://127.0.0.1:$OS_PORT"
ENV
  log "wrote $ENV_FILE"
}

pg_up() {
  mkdir -p "$DIR/pg"
  chown "$SERVICES_USER" "$DIR/pg" 2>/dev/null || true
  # shellcheck disable=SC1090
  . "$ENV_FILE"
  if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    log "initdb $PG_DATA"
    local pwfile="$DIR/pg/.pw"
    printf '%s\n' "$DAGSTER_PG_PASSWORD" >"$pwfile"
    chown "$SERVICES_USER" "$pwfile"; chmod 600 "$pwfile"
    as_user "$PG_BIN/initdb" -D "$PG_DATA" -U etl --pwfile="$pwfile" --auth=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
    cat >>"$PG_DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$DIR/pg'
max_connections = 200
shared_buffers = 256MB
fsync = on
log_min_messages = warning
CONF
  fi
  # prepared transactions: the change-log bound is proven to hold them (tests/integration)
  grep -q '^max_prepared_transactions' "$PG_DATA/postgresql.conf" ||
    echo 'max_prepared_transactions = 20' >>"$PG_DATA/postgresql.conf"
  if ! as_user "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    as_user "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$DIR/pg/postgres.log" -w -t 60 start >/dev/null
  fi
  for db in catalog dagster; do
    PGPASSWORD="$DAGSTER_PG_PASSWORD" psql -h 127.0.0.1 -p "$PG_PORT" -U etl -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1 ||
      PGPASSWORD="$DAGSTER_PG_PASSWORD" psql -h 127.0.0.1 -p "$PG_PORT" -U etl -d postgres -qc "CREATE DATABASE $db" >/dev/null
  done
}

os_install() {
  [ -x "$OS_HOME/bin/opensearch" ] && return 0
  mkdir -p "$DIR/opensearch"
  log "fetching org.opensearch.distribution.integ-test-zip:opensearch:$OS_VERSION with Maven"
  mvn -q -B dependency:copy \
    "-Dartifact=org.opensearch.distribution.integ-test-zip:opensearch:$OS_VERSION:zip" \
    "-DoutputDirectory=$DIR/opensearch" >&2
  unzip -q -o "$DIR/opensearch/opensearch-$OS_VERSION.zip" -d "$DIR/opensearch"
  rm -f "$DIR/opensearch/opensearch-$OS_VERSION.zip"
  cat >>"$OS_HOME/config/opensearch.yml" <<YML
cluster.name: etl-dev
node.name: etl-dev-1
network.host: 127.0.0.1
http.port: $OS_PORT
discovery.type: single-node
path.data: $OS_DATA
path.logs: $DIR/opensearch/logs
action.auto_create_index: false
cluster.routing.allocation.disk.threshold_enabled: false
YML
  sed -i "s/^-Xms1g/-Xms$OS_HEAP/; s/^-Xmx1g/-Xmx$OS_HEAP/" "$OS_HOME/config/jvm.options"
}

os_healthy() { curl -fsS "http://127.0.0.1:$OS_PORT/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null 2>&1; }

os_up() {
  os_install
  mkdir -p "$OS_DATA" "$DIR/opensearch/logs"
  chown -R "$SERVICES_USER" "$DIR/opensearch"
  if ! os_healthy; then
    if [ -n "$(os_pid)" ]; then
      log "OpenSearch is starting"
    else
      log "starting OpenSearch $OS_VERSION on 127.0.0.1:$OS_PORT"
      as_user env JAVA_HOME="${JAVA_HOME:-/usr/lib/jvm/java-17-openjdk-amd64}" \
        "$OS_HOME/bin/opensearch" -d -p "$DIR/opensearch/pid" >"$DIR/opensearch/logs/stdout.log" 2>&1
    fi
    for _ in $(seq 1 180); do
      os_healthy && break
      [ -z "$(os_pid)" ] && break
      sleep 1
    done
    os_healthy || { log "OpenSearch did not become healthy; see $DIR/opensearch/logs"; tail -20 "$DIR/opensearch/logs/stdout.log" "$DIR/opensearch/logs/etl-dev.log" >&2 || true; exit 1; }
  fi
}

status() {
  local ok=0
  # shellcheck disable=SC1090
  [ -f "$ENV_FILE" ] && . "$ENV_FILE"
  if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then log "PostgreSQL up on 127.0.0.1:$PG_PORT"; else log "PostgreSQL down"; ok=1; fi
  if os_healthy; then log "OpenSearch up on 127.0.0.1:$OS_PORT"; else log "OpenSearch down"; ok=1; fi
  return $ok
}

# The node's JVM, found by its home directory: OpenSearch deletes its own pid file when a second
# start fails on the data lock, so the pid file alone cannot be trusted to find the running node.
os_pid() {
  if [ -f "$DIR/opensearch/pid" ] && kill -0 "$(cat "$DIR/opensearch/pid")" 2>/dev/null; then
    cat "$DIR/opensearch/pid"
  else
    pgrep -f -- "-Dopensearch.path.home=$OS_HOME " | head -1 || true
  fi
}

os_down() {
  local pid; pid="$(os_pid)"
  if [ -n "$pid" ] && kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    log "OpenSearch stopped"
  fi
  rm -f "$DIR/opensearch/pid"
}

down() {
  if [ -f "$PG_DATA/PG_VERSION" ] && as_user "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
    as_user "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null && log "PostgreSQL stopped"
  fi
  os_down
}

case "${1:-}" in
  up) ensure_user; ensure_packages; ensure_env_file; chmod 755 "$DIR"; pg_up; os_up; status ;;
  status) status ;;
  down) down ;;
  # for fault-injection tests: OpenSearch alone
  stop-opensearch) os_down ;;
  start-opensearch) os_up ;;
  env) ensure_env_file; cat "$ENV_FILE" ;;
  *) echo "usage: $0 up|status|down|env" >&2; exit 2 ;;
esac
