#!/usr/bin/env bash
# Install (Debian packages / Maven Central) and start the local services of Parley:
# PostgreSQL on localhost:5432, Redis on localhost:6379, Kafka (KRaft) on localhost:9092.
#
#   bash infra/services/up.sh [all|postgres|redis|kafka]...     (default: all)
#
# Idempotent: a service that already answers (ours from .data, or one that was
# running before, e.g. a system PostgreSQL) is reused, not started again.
# Waits until each one really answers (a query, PING, a Kafka Metadata request),
# prints one line per service with the time it took, and exits non-zero naming the
# service that did not come up and its log file. Data: <repo>/.data (git-ignored).
# Stop with infra/services/down.sh; check with infra/services/status.sh.
set -uo pipefail

# shellcheck source=infra/services/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

# Set by each up_<service>: what happened, or why it failed and where to look.
DETAIL=""
FAIL=""
FAIL_LOG=""
FAIL_LOG2=""
FAIL_FROM=1 # first line of FAIL_LOG written by this run

fail() { FAIL=$1; FAIL_LOG=${2:-}; return 1; }

rel() { local p=$1; printf '%s\n' "${p#"$REPO_ROOT"/}"; }

############################# PostgreSQL #############################

PG_SUPER=()

# Finds a way to run SQL as a superuser on the server answering on 5432.
pg_find_super() {
  local own=$1 c out
  if [[ $own == own ]]; then
    PG_SUPER=(as_postgres psql -X -w -Atq -v ON_ERROR_STOP=1 -h "$PG_SOCKDIR" -p "$PG_PORT" -d postgres)
    "${PG_SUPER[@]}" -c 'select 1' >/dev/null 2>&1 && return 0
  fi
  # a system cluster: peer auth over its default socket; else loopback as postgres; else as root
  for c in \
    "as_postgres psql -X -w -Atq -v ON_ERROR_STOP=1 -p $PG_PORT -d postgres" \
    "as_postgres psql -X -w -Atq -v ON_ERROR_STOP=1 -h localhost -p $PG_PORT -d postgres" \
    "psql -X -w -Atq -v ON_ERROR_STOP=1 -h localhost -p $PG_PORT -U postgres -d postgres" \
    "psql -X -w -Atq -v ON_ERROR_STOP=1 -h localhost -p $PG_PORT -U root -d postgres"; do
    read -r -a PG_SUPER <<<"$c"
    if out=$(PGCONNECT_TIMEOUT=3 "${PG_SUPER[@]}" -c 'select rolsuper from pg_roles where rolname = current_user' 2>/dev/null) && [[ $out == t ]]; then
      return 0
    fi
  done
  PG_SUPER=()
  return 1
}

# Role root (superuser, login) and database chat.
pg_ensure_app_role() {
  "${PG_SUPER[@]}" -c "DO \$\$ BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'root') THEN
        CREATE ROLE root SUPERUSER LOGIN;
      ELSIF NOT (SELECT rolsuper AND rolcanlogin FROM pg_roles WHERE rolname = 'root') THEN
        ALTER ROLE root SUPERUSER LOGIN;
      END IF;
    END \$\$;" >/dev/null || return 1
  # Collation C: the read models' keys are ids, compared byte by byte
  # (docs/deploy.md, "Postgres: the database"); the character classes stay
  # the cluster's (template0's LC_CTYPE).
  if [[ $("${PG_SUPER[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'chat'") != 1 ]]; then
    "${PG_SUPER[@]}" -c "CREATE DATABASE chat OWNER root TEMPLATE template0 LC_COLLATE 'C'" >/dev/null || return 1
  fi
  local coll
  coll=$("${PG_SUPER[@]}" -c "SELECT datcollate FROM pg_database WHERE datname = 'chat'")
  if [[ $coll != C && $coll != POSIX ]]; then
    note "postgres: database chat collates with $coll, not C: its indexes are slower (docs/deploy.md, \"Postgres: the database\")"
  fi
}

# For a server we did not start: put trust lines for loopback TCP at the top of
# its pg_hba.conf (first match wins) and reload. Dev/CI only.
pg_trust_loopback() {
  local hba tmp
  hba=$("${PG_SUPER[@]}" -c 'SHOW hba_file') || return 1
  [[ -f $hba && -w $hba ]] || { note "cannot edit $hba"; return 1; }
  if ! grep -q 'parley infra/services' "$hba"; then
    note "postgres: adding loopback trust lines to $hba (backup: $hba.parley.bak)"
    [[ -e $hba.parley.bak ]] || cp -p "$hba" "$hba.parley.bak"
    tmp=$(mktemp)
    {
      printf '# parley infra/services/up.sh: let local dev/CI connect over loopback TCP without password\n'
      printf 'host    all             all             127.0.0.1/32            trust\n'
      printf 'host    all             all             ::1/128                 trust\n'
      cat "$hba"
    } >"$tmp"
    cat "$tmp" >"$hba" # keeps owner and mode
    rm -f "$tmp"
  fi
  "${PG_SUPER[@]}" -c 'SELECT pg_reload_conf()' >/dev/null
}

# initdb (once) and start our own cluster in .data/postgres.
pg_start_own() {
  local bindir ver
  mkdir -p "$DATA_DIR"
  if [[ $PG_HOME != "$DATA_DIR/postgres" ]]; then
    if [[ ! -L $DATA_DIR/postgres ]]; then
      note "postgres: the postgres user cannot reach $DATA_DIR; the cluster lives in $PG_HOME (symlinked as .data/postgres)"
      ln -sfn "$PG_HOME" "$DATA_DIR/postgres"
    fi
    mkdir -p "$PG_HOME"
  else
    mkdir -p "$PG_HOME"
  fi
  chown postgres:postgres "$PG_HOME"
  chmod 700 "$PG_HOME"
  if [[ $PG_SOCKDIR != "$PG_HOME" ]]; then
    mkdir -p "$PG_SOCKDIR" && chown postgres:postgres "$PG_SOCKDIR" && chmod 755 "$PG_SOCKDIR"
  fi
  as_postgres touch "$PG_LOG" || { fail "cannot write $PG_LOG" "$PG_LOG"; return 1; }

  if [[ -s $PGDATA_DIR/PG_VERSION ]]; then
    ver=$(<"$PGDATA_DIR/PG_VERSION")
    bindir=/usr/lib/postgresql/$ver/bin
    [[ -x $bindir/pg_ctl ]] || { fail "cluster in $PGDATA_DIR is PostgreSQL $ver, whose binaries are not installed" "$PG_LOG"; return 1; }
  else
    bindir=$(pg_bindir)
    rm -rf "$PGDATA_DIR" # a half-done initdb
    note "postgres: initdb $PGDATA_DIR"
    if ! as_postgres "$bindir/initdb" -D "$PGDATA_DIR" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >>"$PG_LOG" 2>&1; then
      fail "initdb failed" "$PG_LOG"
      return 1
    fi
    printf "\n# local settings of parley infra/services/up.sh (rewritten at every start)\ninclude_if_exists = 'parley.conf'\n" \
      >>"$PGDATA_DIR/postgresql.conf"
  fi
  cat >"$PGDATA_DIR/parley.conf" <<EOF
# written by infra/services/up.sh at every start: edit that script, not this file
listen_addresses = 'localhost'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKDIR'
max_connections = 300
EOF
  chown postgres:postgres "$PGDATA_DIR/parley.conf"

  # a postmaster.pid whose process is gone (killed, machine restarted)
  if [[ -e $PGDATA_DIR/postmaster.pid ]] && ! pg_own_pid >/dev/null; then
    note "postgres: removing stale $PGDATA_DIR/postmaster.pid"
    rm -f "$PGDATA_DIR/postmaster.pid"
  fi
  note "postgres: starting own cluster (log: $(rel "$PG_LOG"))"
  if ! as_postgres "$bindir/pg_ctl" -D "$PGDATA_DIR" -l "$PG_LOG" -w -t "$PG_TIMEOUT" start </dev/null >/dev/null 2>&1 9>&-; then
    fail "pg_ctl start failed (is port $PG_PORT taken?)" "$PG_LOG"
    return 1
  fi
}

up_postgres() {
  local owner state i pid
  if [[ -z $(pg_bindir) ]] || ! command -v psql >/dev/null 2>&1; then
    apt_install postgresql || { fail "apt-get install postgresql failed" "$DATA_DIR/apt.log"; return 1; }
    [[ -n $(pg_bindir) ]] || { fail "no PostgreSQL server binaries under /usr/lib/postgresql after install"; return 1; }
  fi
  mkdir -p "$DATA_DIR"
  pg_paths

  if pid=$(pg_own_pid); then
    owner=own
    DETAIL="already running (own cluster, pid $pid)"
  else
    state=0
    pg_tcp_state || state=$?
    # something is starting up or shutting down on 5432: give it a moment
    for ((i = 0; state == 1 && i < PG_TIMEOUT * 2; i++)); do
      sleep 0.5
      state=0
      pg_tcp_state || state=$?
    done
    if [[ $state == 0 ]]; then
      owner=external
      DETAIL="already running (not started by us: reused)"
    else
      pg_start_own || return 1
      owner=own
      pid=$(pg_own_pid) || pid="?"
      DETAIL="started own cluster in $(rel "$DATA_DIR/postgres") (pid $pid)"
    fi
  fi

  if ! pg_query_ok; then
    local log=$PG_LOG
    [[ $owner == external ]] && log="the log of the PostgreSQL server on port $PG_PORT"
    pg_find_super "$owner" || { fail "cannot connect as a superuser to create role root / database chat" "$log"; return 1; }
    pg_ensure_app_role || { fail "creating role root / database chat failed" "$log"; return 1; }
    if [[ $owner == external ]] && ! pg_query_ok; then
      pg_trust_loopback || { fail "root cannot log in over loopback TCP and pg_hba.conf could not be changed" "$log"; return 1; }
    fi
    for ((i = 0; i < PG_TIMEOUT * 2; i++)); do
      pg_query_ok && break
      sleep 0.5
    done
    pg_query_ok || { fail "psql '$PG_URL' -c 'select 1' fails" "$log"; return 1; }
  fi
  DETAIL="localhost:$PG_PORT db chat  $DETAIL"
}

############################# Redis #############################

up_redis() {
  local pid i
  if redis_ping; then
    if pid=$(redis_own_pid); then
      DETAIL="localhost:$REDIS_PORT  already running (ours, pid $pid)"
    else
      DETAIL="localhost:$REDIS_PORT  already running (not started by us: reused)"
    fi
    return 0
  fi
  if ! redis_own_pid >/dev/null && port_open "$REDIS_PORT"; then
    fail "port $REDIS_PORT is taken by a program that does not answer PING with PONG (a Redis with a password?)"
    return 1
  fi
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    apt_install redis-server redis-tools || { fail "apt-get install redis-server failed" "$DATA_DIR/apt.log"; return 1; }
  fi
  mkdir -p "$REDIS_DIR"
  if ! pid=$(redis_own_pid); then
    [[ -e $REDIS_PID ]] && { note "redis: removing stale $(rel "$REDIS_PID")"; rm -f "$REDIS_PID"; }
    cat >"$REDIS_CONF" <<EOF
# written by infra/services/up.sh at every start: edit that script, not this file
port $REDIS_PORT
bind 127.0.0.1 -::1
protected-mode yes
daemonize yes
supervised no
pidfile "$REDIS_PID"
logfile "$REDIS_LOG"
loglevel notice
dir "$REDIS_DIR"
dbfilename dump.rdb
save 3600 1 300 100 60 10000
appendonly no
EOF
    note "redis: starting (log: $(rel "$REDIS_LOG"))"
    if ! redis-server "$REDIS_CONF" </dev/null >>"$REDIS_LOG" 2>&1 9>&-; then
      fail "redis-server exited with an error" "$REDIS_LOG"
      return 1
    fi
    DETAIL="started"
  else
    DETAIL="was starting"
  fi
  for ((i = 0; i < REDIS_TIMEOUT * 5; i++)); do
    redis_ping && break
    sleep 0.2
  done
  redis_ping || { fail "no PONG from localhost:$REDIS_PORT within ${REDIS_TIMEOUT}s" "$REDIS_LOG"; return 1; }
  pid=$(redis_own_pid) || pid="?"
  DETAIL="localhost:$REDIS_PORT  $DETAIL (pid $pid, data $(rel "$REDIS_DIR"))"
}

############################# Kafka #############################

kafka_version() {
  local j
  j=$(compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" | head -n1) || return 0
  j=${j##*/kafka_2.13-}
  printf '%s\n' "${j%.jar}"
}

# Jars from infra/kafka/pom.xml into .data/kafka/libs, unless already there for this pom.
kafka_libs() {
  local want tmp
  want=$(sha256sum <"$KAFKA_POM" | cut -c1-64)
  if [[ -f $KAFKA_LIBS/.pom.sha256 && $(<"$KAFKA_LIBS/.pom.sha256") == "$want" ]] &&
    compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" >/dev/null; then
    return 0
  fi
  if ! command -v mvn >/dev/null 2>&1; then
    apt_install maven || { fail "apt-get install maven failed" "$DATA_DIR/apt.log"; return 1; }
  fi
  note "kafka: fetching jars with maven (log: $(rel "$KAFKA_LOGS/mvn.log"))"
  tmp="$KAFKA_DIR/libs.tmp"
  rm -rf "$tmp"
  if ! mvn -B -q -Dstyle.color=never -f "$KAFKA_POM" dependency:copy-dependencies \
    -DoutputDirectory="$tmp" >"$KAFKA_LOGS/mvn.log" 2>&1; then
    fail "mvn dependency:copy-dependencies failed" "$KAFKA_LOGS/mvn.log"
    return 1
  fi
  printf '%s\n' "$want" >"$tmp/.pom.sha256"
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
}

kafka_cluster_id() {
  local id=""
  if [[ -s $KAFKA_CLUSTER_ID ]]; then
    id=$(tr -d '[:space:]' <"$KAFKA_CLUSTER_ID")
  fi
  # a Kafka Uuid: 16 random bytes, base64url without padding; not starting with '-'
  while [[ ! $id =~ ^[A-Za-z0-9_][A-Za-z0-9_-]{21}$ ]]; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    printf '%s\n' "$id" >"$KAFKA_CLUSTER_ID"
  done
  printf '%s\n' "$id"
}

kafka_start() {
  local java=$1 cid i
  sed "s|@KAFKA_DATA_DIR@|$KAFKA_DATA|g" "$INFRA_DIR/kafka/server.properties" >"$KAFKA_PROPS"
  if [[ ! -f $KAFKA_DATA/meta.properties ]]; then
    cid=$(kafka_cluster_id)
    note "kafka: formatting $(rel "$KAFKA_DATA") (cluster id $cid)"
    if ! kafka_tool kafka.tools.StorageTool format -t "$cid" -c "$KAFKA_PROPS" --ignore-formatted \
      >>"$KAFKA_LOGS/format.log" 2>&1; then
      fail "kafka storage format failed" "$KAFKA_LOGS/format.log"
      return 1
    fi
  fi
  [[ -e $KAFKA_PID ]] && { note "kafka: removing stale $(rel "$KAFKA_PID")"; rm -f "$KAFKA_PID"; }
  FAIL_FROM=1
  [[ -f $KAFKA_LOGS/server.log ]] && FAIL_FROM=$(($(wc -l <"$KAFKA_LOGS/server.log") + 1))
  note "kafka: starting (logs: $(rel "$KAFKA_LOGS")/server.log, kafka.out)"
  # shellcheck disable=SC2086
  spawn_daemon "$KAFKA_PID" "$KAFKA_OUT" \
    "$java" $KAFKA_HEAP_OPTS -server \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dkafka.logs.dir="$KAFKA_LOGS" -Dlog4j2.configurationFile="$KAFKA_LOG4J" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_PROPS" ||
    { fail "the broker process did not start" "$KAFKA_OUT"; return 1; }
}

up_kafka() {
  local java pid i p
  if kafka_probe; then
    # The chaos and cluster tests start private brokers from these jars,
    # so fetch them even when a broker already answers.
    mkdir -p "$KAFKA_DIR" "$KAFKA_LOGS"
    kafka_libs || return 1
    if pid=$(kafka_own_pid); then
      # Ours but started from an older infra/kafka/server.properties (a
      # setting Parley's clients rely on changed): restart it with the new.
      if ! sed "s|@KAFKA_DATA_DIR@|$KAFKA_DATA|g" "$INFRA_DIR/kafka/server.properties" | cmp -s - "$KAFKA_PROPS"; then
        note "kafka: infra/kafka/server.properties changed since the broker started: restarting it"
        stop_pid "$pid" kafka 60 || { fail "could not stop the broker (pid $pid)"; return 1; }
      else
        DETAIL="localhost:$KAFKA_PORT  already running (ours, Kafka $(kafka_version), pid $pid)"
        return 0
      fi
    else
      DETAIL="localhost:$KAFKA_PORT  already running (not started by us: reused; it must allow group.min.session.timeout.ms=2000)"
      return 0
    fi
  fi
  mkdir -p "$KAFKA_DIR" "$KAFKA_DATA" "$KAFKA_LOGS"
  if ! java=$(find_java); then
    apt_install openjdk-17-jre-headless || { fail "apt-get install openjdk-17-jre-headless failed" "$DATA_DIR/apt.log"; return 1; }
    java=$(find_java) || { fail "no java 17+ after install"; return 1; }
  fi
  if pid=$(kafka_own_pid); then
    DETAIL="was starting"
  else
    for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
      if port_open "$p"; then
        fail "port $p is taken by a program that does not answer as a Kafka broker on $KAFKA_PORT"
        return 1
      fi
    done
    kafka_libs || return 1
    kafka_start "$java" || return 1
    DETAIL="started"
  fi
  for ((i = 0; i < KAFKA_TIMEOUT * 2; i++)); do
    kafka_probe && break
    if ! pid=$(kafka_own_pid); then
      fail "the broker process exited" "$KAFKA_LOGS/server.log"
      FAIL_LOG2=$KAFKA_OUT
      return 1
    fi
    sleep 0.5
  done
  if ! kafka_probe; then
    fail "no answer to a Metadata request on localhost:$KAFKA_PORT within ${KAFKA_TIMEOUT}s (pid ${pid:-?} still running)" "$KAFKA_LOGS/server.log"
    FAIL_LOG2=$KAFKA_OUT
    return 1
  fi
  pid=$(kafka_own_pid) || pid="?"
  DETAIL="localhost:$KAFKA_PORT  $DETAIL (Kafka $(kafka_version), pid $pid, KRaft, data $(rel "$KAFKA_DATA"))"
}

############################# main #############################

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  usage
  exit 0
fi
mapfile -t wanted < <(parse_services "$@")
if ((${#wanted[@]} == 0)); then
  usage >&2
  exit 2
fi

take_lock
failed=()
t_all=$EPOCHREALTIME
for svc in "${wanted[@]}"; do
  DETAIL="" FAIL="" FAIL_LOG="" FAIL_LOG2="" FAIL_FROM=1
  t0=$EPOCHREALTIME
  if "up_$svc"; then
    printf '%-8s  up    %-6s  %s\n' "$svc" "$(elapsed "$t0")" "$DETAIL"
  else
    show=1
    if [[ -z $FAIL_LOG ]]; then
      show=0 # nothing written there by this run: name it, don't quote old lines
      case $svc in
        postgres) FAIL_LOG=${PG_LOG:-$DATA_DIR/postgres/postgres.log} ;;
        redis) FAIL_LOG=$REDIS_LOG ;;
        kafka) FAIL_LOG=$KAFKA_LOGS/server.log ;;
      esac
    fi
    printf '%-8s  FAIL  %-6s  %s\n' "$svc" "$(elapsed "$t0")" "$FAIL" >&2
    printf '          log: %s\n' "$FAIL_LOG" >&2
    if [[ $show == 1 ]]; then
      show_errors "$FAIL_LOG" "$FAIL_FROM"
      show_tail "$FAIL_LOG" 15
    fi
    if [[ -n $FAIL_LOG2 ]]; then
      printf '          log: %s\n' "$FAIL_LOG2" >&2
      show_tail "$FAIL_LOG2" 15
    fi
    failed+=("$svc (log: $FAIL_LOG)")
  fi
done

if ((${#failed[@]})); then
  printf 'ERROR: did not start (after %s):\n' "$(elapsed "$t_all")" >&2
  printf '  %s\n' "${failed[@]}" >&2
  exit 1
fi
printf 'all up: %s (%s total)\n' "${wanted[*]}" "$(elapsed "$t_all")"
