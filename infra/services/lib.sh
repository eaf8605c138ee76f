# shellcheck shell=bash disable=SC2034,SC2016,SC2012
# Shared helpers of infra/services/{up,down,status}.sh. Sourced, not run.
#
# Everything these scripts create lives under <repo>/.data (git-ignored):
#   .data/postgres  own PostgreSQL cluster (data/, postgres.log, socket)
#   .data/redis     redis.conf, redis.pid, redis.log, dump.rdb
#   .data/kafka     libs/ (jars from infra/kafka/pom.xml), data/, logs/, kafka.pid, cluster.id

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
DATA_DIR="$REPO_ROOT/.data"
INFRA_DIR="$REPO_ROOT/infra"

SERVICES=(postgres redis kafka)

# Fixed local endpoints the app defaults to (infra/config).
PG_PORT=5432
PG_URL="postgres://localhost:${PG_PORT}/chat?sslmode=disable"
REDIS_PORT=6379
KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093

PG_TIMEOUT=${PG_TIMEOUT:-30}
REDIS_TIMEOUT=${REDIS_TIMEOUT:-30}
KAFKA_TIMEOUT=${KAFKA_TIMEOUT:-90}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}

REDIS_DIR="$DATA_DIR/redis"
REDIS_CONF="$REDIS_DIR/redis.conf"
REDIS_PID="$REDIS_DIR/redis.pid"
REDIS_LOG="$REDIS_DIR/redis.log"

KAFKA_DIR="$DATA_DIR/kafka"
KAFKA_LIBS="$KAFKA_DIR/libs"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_LOGS="$KAFKA_DIR/logs"
KAFKA_PID="$KAFKA_DIR/kafka.pid"
KAFKA_OUT="$KAFKA_LOGS/kafka.out"
KAFKA_PROPS="$KAFKA_DIR/server.properties"
KAFKA_CLUSTER_ID="$KAFKA_DIR/cluster.id"
KAFKA_POM="$INFRA_DIR/kafka/pom.xml"
KAFKA_LOG4J="$INFRA_DIR/kafka/log4j2.xml"

say() { printf '%s\n' "$*"; }
note() { printf '[services] %s\n' "$*" >&2; }

# seconds since $1 (an $EPOCHREALTIME value), one decimal
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }

# Last lines of a log, indented, to stderr (for failure messages).
show_tail() {
  local f=$1 n=${2:-25}
  [[ -f $f ]] || return 0
  printf '    --- last %s lines of %s ---\n' "$n" "$f" >&2
  tail -n "$n" "$f" | sed 's/^/    /' >&2
}

# show_errors FILE [FROM_LINE]: ERROR/FATAL lines (with the next lines: the
# exception) of a log written from line FROM_LINE on.
show_errors() {
  local f=$1 from=${2:-1} out
  [[ -f $f ]] || return 0
  out=$(tail -n "+$from" "$f" | grep -E -A3 '(\] |^)(ERROR|FATAL)[: ]' | cut -c1-400 | head -n 40)
  [[ -n $out ]] || return 0
  printf '    --- errors in %s ---\n' "$f" >&2
  printf '%s\n' "$out" | sed 's/^/    /' >&2
}

# port_open PORT: something accepts TCP connections on localhost:PORT.
port_open() { timeout 3 bash -c 'exec 3<>"/dev/tcp/localhost/$1"' _ "$1" 2>/dev/null; }

# spawn_daemon PIDFILE OUTFILE CMD...: runs CMD in its own session in the
# background, its pid in PIDFILE (written by the child itself, so it names the
# process even before the exec). Returns once PIDFILE is written (at most 5 s):
# a caller that checks the pid right away must not find it missing.
spawn_daemon() {
  local pidfile=$1 out=$2 i
  shift 2
  rm -f "$pidfile"
  # shellcheck disable=SC2016
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$out" 2>&1 8>&- 9>&- &
  for ((i = 0; i < 50; i++)); do
    [[ -s $pidfile ]] && return 0
    sleep 0.1
  done
  return 1
}

# pid_alive PID [COMM-SUBSTRING]: the process exists (and its command line matches).
pid_alive() {
  local pid=$1 want=${2:-}
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -n $want ]]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$want" || return 1
  fi
}

# pidfile_alive FILE [COMM-SUBSTRING]: prints the pid when the file names a live process.
pidfile_alive() {
  local f=$1 pid
  [[ -s $f ]] || return 1
  pid=$(head -n1 "$f" 2>/dev/null | tr -dc 0-9)
  pid_alive "$pid" "${2:-}" || return 1
  printf '%s\n' "$pid"
}

# wait_pid_gone PID SECONDS
wait_pid_gone() {
  local pid=$1 secs=$2 i
  for ((i = 0; i < secs * 5; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.2
  done
  return 1
}

# stop_pid PID NAME SECONDS: TERM, wait, then KILL.
stop_pid() {
  local pid=$1 name=$2 secs=$3
  kill -TERM "$pid" 2>/dev/null || return 0
  if ! wait_pid_gone "$pid" "$secs"; then
    note "$name (pid $pid) still running after ${secs}s: sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_pid_gone "$pid" 5 || return 1
  fi
}

############################# packages #############################

_APT_UPDATED=0
# apt_install PKG...: apt-get update (once per run) and install, without letting
# the packages' maintainer scripts start their system services (policy-rc.d).
apt_install() {
  local own_policy=0 rc=0
  if [[ $(id -u) != 0 ]]; then
    note "need root to apt-get install $*"
    return 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# temporary, from parley infra/services/lib.sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  mkdir -p "$DATA_DIR"
  local log="$DATA_DIR/apt.log"
  if [[ $_APT_UPDATED == 0 ]]; then
    note "apt-get update"
    if apt-get -o DPkg::Lock::Timeout=300 update >>"$log" 2>&1; then
      _APT_UPDATED=1
    else
      rc=1
    fi
  fi
  if [[ $rc == 0 ]]; then
    note "apt-get install $*"
    apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "$@" >>"$log" 2>&1 || rc=1
  fi
  [[ $own_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d
  [[ $rc == 0 ]] || note "apt-get failed (log: $log)"
  return "$rc"
}

############################# PostgreSQL #############################

# Directory of the newest installed server binaries (initdb, pg_ctl, postgres).
pg_bindir() {
  local d best=""
  while IFS= read -r d; do
    [[ -x $d/initdb && -x $d/pg_ctl ]] && best=$d
  done < <(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V)
  [[ -n $best ]] && printf '%s\n' "$best"
}

# as_postgres CMD...: run as the postgres OS user from a directory it can read.
as_postgres() { (cd / && runuser -u postgres -- "$@"); }

# Sets PG_HOME (cluster home: data/, postgres.log), PGDATA_DIR, PG_SOCKDIR, PG_LOG.
# Normally PG_HOME is .data/postgres. When the postgres OS user cannot reach the
# repository (e.g. a clone under /root, mode 700) the cluster lives in
# /var/lib/postgresql/parley-<hash> and .data/postgres is a symlink to it.
pg_paths() {
  local hash
  hash=$(printf '%s' "$REPO_ROOT" | sha256sum | cut -c1-10)
  PG_HOME="$DATA_DIR/postgres"
  local probe=$DATA_DIR
  [[ -d $probe ]] || probe=$REPO_ROOT
  if [[ ! -L $PG_HOME ]] && id postgres >/dev/null 2>&1 && ! as_postgres test -x "$probe" 2>/dev/null; then
    PG_HOME="/var/lib/postgresql/parley-$hash"
  elif [[ -L $PG_HOME ]]; then
    PG_HOME=$(readlink -f "$PG_HOME")
  fi
  PGDATA_DIR="$PG_HOME/data"
  PG_LOG="$PG_HOME/postgres.log"
  PG_SOCKDIR="$PG_HOME"
  # unix socket paths are limited to ~107 bytes
  if ((${#PG_SOCKDIR} > 80)); then
    PG_SOCKDIR="/tmp/.parley-pg-$hash"
  fi
}

# pid of our own postmaster (from .data), if it runs
pg_own_pid() {
  [[ -n ${PGDATA_DIR:-} ]] || pg_paths
  pidfile_alive "$PGDATA_DIR/postmaster.pid" postgres
}

# The app's connection works for root over TCP (a real query).
pg_query_ok() {
  PGCONNECT_TIMEOUT=3 psql -w -X -Atq "$PG_URL" -c 'select 1' 2>/dev/null | grep -qx 1
}

# pg_isready over TCP: 0 accepting, 1 rejecting (starting), 2 no answer.
pg_tcp_state() {
  local rc=0
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h localhost -p "$PG_PORT" -t 3 >/dev/null 2>&1 || rc=$?
  else
    (exec 3<>"/dev/tcp/localhost/$PG_PORT") 2>/dev/null && rc=0 || rc=2
  fi
  return "$rc"
}

############################# Redis #############################

# Answers PING on localhost:6379 with PONG (redis-cli, or a raw RESP exchange).
redis_ping() {
  local out
  if command -v redis-cli >/dev/null 2>&1; then
    out=$(timeout 3 redis-cli -h localhost -p "$REDIS_PORT" ping 2>/dev/null) || return 1
    [[ $out == PONG ]]
  else
    out=$(timeout 3 bash -c 'exec 3<>/dev/tcp/localhost/'"$REDIS_PORT"' || exit 1
      printf "PING\r\n" >&3; head -c 7 <&3' 2>/dev/null) || return 1
    [[ $out == +PONG* ]]
  fi
}

redis_own_pid() { pidfile_alive "$REDIS_PID" redis-server; }

############################# Kafka #############################

# kafka_probe: a real Kafka exchange with localhost:9092. Sends a Metadata v4 request
# (correlation id 12345, no topics) and checks that the answer carries our
# correlation id and at least one broker. A KRaft broker only opens its
# listener once it has caught up with the metadata log and is unfenced.
kafka_probe() {
  local port=$KAFKA_PORT bytes
  bytes=$(timeout 5 bash -c '
    exec 3<>"/dev/tcp/localhost/$1" || exit 1
    printf "\x00\x00\x00\x1b\x00\x03\x00\x04\x00\x00\x30\x39\x00\x0cparley-probe\x00\x00\x00\x00\x00" >&3
    head -c 20 <&3 | od -An -tu1 -v' _ "$port" 2>/dev/null) || return 1
  # shellcheck disable=SC2206
  local b=($bytes)
  ((${#b[@]} >= 20)) || return 1
  # response header: correlation id (bytes 4..7) == 12345 = 0 0 48 57
  [[ "${b[4]} ${b[5]} ${b[6]} ${b[7]}" == "0 0 48 57" ]] || return 1
  # body: throttle_time_ms (8..11), brokers array length (12..15) >= 1
  local nbrokers=$(((b[12] << 24) | (b[13] << 16) | (b[14] << 8) | b[15]))
  ((nbrokers >= 1 && nbrokers < 1000))
}

kafka_own_pid() { pidfile_alive "$KAFKA_PID" kafka.Kafka; }

# java binary of version >= 17, or empty
find_java() {
  local j v
  for j in "${JAVA:-}" "$(command -v java 2>/dev/null)" /usr/lib/jvm/java-17-openjdk-*/bin/java /usr/lib/jvm/java-2[0-9]-openjdk-*/bin/java; do
    [[ -n $j && -x $j ]] || continue
    v=$("$j" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2; exit}')
    if [[ ${v%%.*} =~ ^[0-9]+$ ]] && ((${v%%.*} >= 17)); then
      printf '%s\n' "$j"
      return 0
    fi
  done
  return 1
}

# kafka_tool CLASS ARGS...: run a Kafka command-line class with our jars
# (e.g. kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server localhost:9092 --list).
kafka_tool() {
  local java
  java=$(find_java) || { note "java 17+ not found"; return 1; }
  "$java" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
    -Dlog4j2.configurationFile="$KAFKA_LOG4J" -Dkafka.logs.dir="$KAFKA_LOGS/tools" \
    -cp "$KAFKA_LIBS/*" "$@"
}

# Which services the arguments name (default: all).
parse_services() {
  local a out=()
  (($# == 0)) && set -- all
  for a in "$@"; do
    case $a in
      all) out+=("${SERVICES[@]}") ;;
      postgres | pg | postgresql) out+=(postgres) ;;
      redis) out+=(redis) ;;
      kafka) out+=(kafka) ;;
      -h | --help) return 2 ;;
      *) note "unknown service '$a' (expected: all|postgres|redis|kafka)"; return 2 ;;
    esac
  done
  # unique, in canonical order
  local s
  for s in "${SERVICES[@]}"; do
    [[ " ${out[*]} " == *" $s "* ]] && printf '%s\n' "$s"
  done
}

# Serialize up/down runs (flock on .data/.services.lock, fd 9). Whatever they
# start in the background must not inherit fd 9 (start daemons with 9>&-).
take_lock() {
  mkdir -p "$DATA_DIR"
  exec 9>"$DATA_DIR/.services.lock"
  if ! flock -w 300 9; then
    note "another infra/services up/down run has held $DATA_DIR/.services.lock for 300s: giving up"
    exit 1
  fi
}
