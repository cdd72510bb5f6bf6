#!/usr/bin/env bash
# Local PostgreSQL 15 + OpenSearch (+ Redis, the celery broker) for development, tests and CI.
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
#
# OPENSEARCH_VERSION picks the OpenSearch line: 3.3.2 by default (on Java 21+: the machine's
# Temurin 25), 2.19.6 still supported (on JDK 17). Each version keeps its own install and data
# directory under .services/opensearch, so both lines stay installed side by side; one runs at a
# time on OS_PORT. The integ-test distribution carries almost no modules, so the standard ones
# users' mappings need (analysis-common, mapper-extras, lang-painless) are added from Maven
# Central (scripts/opensearch/modules.pom.xml, checksums verified) with their descriptors.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/.services"
SERVICES_USER="${SERVICES_USER:-etl}"
PG_PORT="${PG_PORT:-5432}"
OS_PORT="${OS_PORT:-9200}"
OS_VERSION="${OPENSEARCH_VERSION:-${OS_VERSION:-3.3.2}}"
OS_HEAP="${OS_HEAP:-1g}"
REDIS_PORT="${REDIS_PORT:-6379}"
PG_BIN="/usr/lib/postgresql/15/bin"
PG_DATA="$DIR/pg/data"
OS_HOME="$DIR/opensearch/opensearch-$OS_VERSION"
OS_DATA="$DIR/opensearch/data-$OS_VERSION"
OS_PID="$DIR/opensearch/pid-$OS_VERSION"
OS_LOGS="$DIR/opensearch/logs-$OS_VERSION"
OS_MAJOR="${OS_VERSION%%.*}"
ENV_FILE="$DIR/env"

log() { printf 'services: %s\n' "$*" >&2; }

# OpenSearch 3.x needs Java 21 or newer; 2.x runs on 17. JAVA_HOME overrides.
os_java_home() {
  if [ -n "${JAVA_HOME:-}" ]; then echo "$JAVA_HOME"; return; fi
  if [ "$OS_MAJOR" -ge 3 ]; then
    local jdk
    for jdk in /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/temurin-21-jdk-amd64 /usr/lib/jvm/java-21-openjdk-amd64; do
      [ -x "$jdk/bin/java" ] && { echo "$jdk"; return; }
    done
    log "OpenSearch $OS_VERSION needs Java 21 or newer: install one, set JAVA_HOME, or OPENSEARCH_VERSION=2.19.6"
    exit 1
  fi
  echo /usr/lib/jvm/java-17-openjdk-amd64
}
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
  command -v redis-server >/dev/null || missing+=(redis-server)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

ensure_env_file() {
  mkdir -p "$DIR"
  if [ -f "$ENV_FILE" ]; then
    # older files set STATE_DATABASE_URL to the demo's database: the state then stayed there for
    # the command line when a user pointed SOURCE_DATABASE_URL elsewhere. One rule now: the state
    # lives beside the source unless STATE_DATABASE_URL is set on purpose.
    sed -i '/^export STATE_DATABASE_URL=/d' "$ENV_FILE"
    return 0
  fi
  local pw
  pw="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
  umask 077
  cat >"$ENV_FILE" <<ENV
# Written by scripts/services.sh on first start. Local development only.
export SOURCE_DATABASE_URL="postgresql+psycopg://etl:$pw@127.0.0.1:$PG_PORT/catalog"
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
path.logs: $OS_LOGS
action.auto_create_index: false
cluster.routing.allocation.disk.threshold_enabled: false
YML
  sed -i "s/^-Xms1g/-Xms$OS_HEAP/; s/^-Xmx1g/-Xmx$OS_HEAP/" "$OS_HOME/config/jvm.options"
}

# The standard modules, laid out as a full distribution has them: one directory per module with
# its jars, a plugin-descriptor.properties (after the distribution's own transport-netty4 one)
# and, for painless, the security policy the 2.x security manager enforces. Idempotent.
os_modules() {
  local jars="$DIR/opensearch/module-jars-$OS_VERSION"
  if [ ! -f "$jars/.complete" ]; then
    log "fetching the modules analysis-common, mapper-extras, lang-painless $OS_VERSION with Maven"
    rm -rf "$jars"
    mvn -q -B -C -f "$ROOT/scripts/opensearch/modules.pom.xml" dependency:copy-dependencies \
      "-Dopensearch.version=$OS_VERSION" "-DoutputDirectory=$jars" \
      -DincludeArtifactIds=lang-painless,analysis-common,mapper-extras-client,antlr4-runtime,asm,asm-util,asm-tree,asm-commons,asm-analysis,opensearch-scripting-painless-spi >&2
    touch "$jars/.complete"
  fi
  os_module lang-painless "An easy, safe and fast scripting language for OpenSearch" "" \
    "org/opensearch/painless/PainlessModulePlugin org/opensearch/painless/PainlessPlugin" \
    lang-painless- antlr4-runtime- asm- asm-analysis- asm-commons- asm-tree- asm-util- opensearch-scripting-painless-spi-
  os_module analysis-common 'Adds "built in" analyzers to OpenSearch.' lang-painless \
    "org/opensearch/analysis/common/CommonAnalysisModulePlugin org/opensearch/analysis/common/CommonAnalysisPlugin" \
    analysis-common-
  os_module mapper-extras "Adds advanced field mappers" "" \
    "org/opensearch/index/mapper/MapperExtrasModulePlugin org/opensearch/index/mapper/MapperExtrasPlugin" \
    mapper-extras-client-
  if [ ! -f "$OS_HOME/modules/lang-painless/plugin-security.policy" ]; then
    cat >"$OS_HOME/modules/lang-painless/plugin-security.policy" <<'POLICY'
grant {
  // needed to generate runtime classes
  permission java.lang.RuntimePermission "createClassLoader";
  // needed to find the classloader to load whitelisted classes from
  permission java.lang.RuntimePermission "getClassLoader";
};
POLICY
  fi
}

# os_module NAME DESCRIPTION EXTENDS "CLASS CANDIDATES" JAR-PREFIX...
os_module() {
  local name="$1" description="$2" extends="$3" candidates="$4"; shift 4
  local dir="$OS_HOME/modules/$name" jars="$DIR/opensearch/module-jars-$OS_VERSION" prefix jar class=""
  [ -f "$dir/plugin-descriptor.properties" ] && return 0
  rm -rf "$dir"  # a half-made module of an interrupted run
  mkdir -p "$dir"
  for prefix in "$@"; do
    for jar in "$jars/$prefix"[0-9]*.jar; do
      [ -f "$jar" ] || { log "module $name: no $prefix*.jar was fetched"; exit 1; }
      cp "$jar" "$dir/"
    done
  done
  # the plugin class: renamed in 3.x (…ModulePlugin), so read it from the module's own jar
  local listing; listing="$(unzip -Z1 "$dir/$1"*.jar)"
  for candidate in $candidates; do
    if grep -qx "$candidate.class" <<<"$listing"; then class="${candidate//\//.}"; break; fi
  done
  [ -n "$class" ] || { log "module $name: none of $candidates in its jar"; exit 1; }
  sed -e "s|^description=.*|description=$description|" -e "s|^name=.*|name=$name|" \
    -e "s|^classname=.*|classname=$class|" -e "s|^extended.plugins=.*|extended.plugins=$extends|" \
    "$OS_HOME/modules/transport-netty4/plugin-descriptor.properties" >"$dir/plugin-descriptor.properties.tmp"
  mv "$dir/plugin-descriptor.properties.tmp" "$dir/plugin-descriptor.properties"
}

os_healthy() { curl -fsS "http://127.0.0.1:$OS_PORT/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null 2>&1; }

# The version of whatever node answers on OS_PORT (empty if none).
os_answering() {
  { curl -fsS "http://127.0.0.1:$OS_PORT/" 2>/dev/null || true; } | sed -n 's/.*"number" *: *"\([^"]*\)".*/\1/p' | head -1
}

os_up() {
  local answering; answering="$(os_answering)"
  if [ -n "$answering" ] && [ "$answering" != "$OS_VERSION" ]; then
    log "OpenSearch $answering already answers on port $OS_PORT; stop it first (scripts/services.sh stop-opensearch with OPENSEARCH_VERSION=$answering, or down)"
    exit 1
  fi
  os_install
  os_modules
  mkdir -p "$OS_DATA" "$OS_LOGS"
  chown -R "$SERVICES_USER" "$DIR/opensearch"
  if ! os_healthy; then
    if [ -n "$(os_pid)" ]; then
      log "OpenSearch is starting"
    else
      log "starting OpenSearch $OS_VERSION on 127.0.0.1:$OS_PORT"
      as_user env JAVA_HOME="$(os_java_home)" \
        "$OS_HOME/bin/opensearch" -d -p "$OS_PID" >"$OS_LOGS/stdout.log" 2>&1
    fi
    for _ in $(seq 1 180); do
      os_healthy && break
      [ -z "$(os_pid)" ] && break
      sleep 1
    done
    os_healthy || { log "OpenSearch did not become healthy; see $OS_LOGS"; tail -n 20 "$OS_LOGS/stdout.log" "$OS_LOGS/etl-dev.log" >&2 || true; exit 1; }
  fi
}

# Redis, the broker of Dagster's celery executor (a sharded backfill spread over workers).
# No persistence: a broker restart loses queued steps, and Dagster re-executes from failure.
redis_up() {
  mkdir -p "$DIR/redis"
  chown "$SERVICES_USER" "$DIR/redis" 2>/dev/null || true
  if ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    log "starting Redis on 127.0.0.1:$REDIS_PORT"
    as_user redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DIR/redis" --daemonize yes \
      --pidfile "$DIR/redis/pid" --logfile "$DIR/redis/redis.log" --save "" --appendonly no
    for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
}

redis_down() {
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 && log "Redis stopped" || true
}

status() {
  local ok=0
  # shellcheck disable=SC1090
  [ -f "$ENV_FILE" ] && . "$ENV_FILE"
  if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then log "PostgreSQL up on 127.0.0.1:$PG_PORT"; else log "PostgreSQL down"; ok=1; fi
  if os_healthy; then log "OpenSearch $(os_answering) up on 127.0.0.1:$OS_PORT"; else log "OpenSearch down"; ok=1; fi
  if redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then log "Redis up on 127.0.0.1:$REDIS_PORT"; else log "Redis down"; ok=1; fi
  return $ok
}

# The node's JVM, found by its home directory: OpenSearch deletes its own pid file when a second
# start fails on the data lock, so the pid file alone cannot be trusted to find the running node.
os_pid() {
  if [ -f "$OS_PID" ] && kill -0 "$(cat "$OS_PID")" 2>/dev/null; then
    cat "$OS_PID"
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
  rm -f "$OS_PID"
}

down() {
  if [ -f "$PG_DATA/PG_VERSION" ] && as_user "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
    as_user "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null && log "PostgreSQL stopped"
  fi
  # every installed line, whichever is running
  local home
  for home in "$DIR"/opensearch/opensearch-*/; do
    [ -d "$home" ] || continue
    home="${home%/}"
    OS_VERSION="${home##*/opensearch-}" OS_HOME="$home" OS_PID="$DIR/opensearch/pid-${home##*/opensearch-}" os_down
  done
  redis_down
}

case "${1:-}" in
  up) ensure_user; ensure_packages; ensure_env_file; chmod 755 "$DIR"; pg_up; os_up; redis_up; status ;;
  status) status ;;
  down) down ;;
  # for fault-injection tests: OpenSearch alone
  stop-opensearch) os_down ;;
  start-opensearch) os_up ;;
  env) ensure_env_file; cat "$ENV_FILE" ;;
  *) echo "usage: $0 up|status|down|env" >&2; exit 2 ;;
esac
