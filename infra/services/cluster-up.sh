#!/usr/bin/env bash
# Start the cluster profile of Parley's local services:
#   Kafka: three KRaft nodes (broker+controller each, a three-voter quorum) on
#          127.0.0.1:19092-19094 (controllers 19192-19194), from the same jars as
#          the single node (.data/kafka/libs, infra/kafka/pom.xml);
#   Redis: a Redis Cluster of three primaries and three replicas on 127.0.0.1:17001-17006;
#   the events topic (chat.events, 8 partitions) with replication factor 3 and
#          min.insync.replicas=2, created by `chatctl topics`.
# Postgres is the shared one on 5432 (tests use their own schema).
#
#   bash infra/services/cluster-up.sh [all|kafka|redis|topic]...     (default: all)
#
# Idempotent: nodes that run are kept, stopped ones are started again (a node
# restarted after a failure rejoins with its data), the Redis cluster is
# created once. Waits until every Kafka broker sees all three brokers and every
# Redis node reports cluster_state:ok with all slots served. Writes
# .data/cluster/env: `set -a; . .data/cluster/env; set +a` points chatd, chatctl
# and tests at the cluster. Never touches the single-node services.
# Stop with infra/services/cluster-down.sh; check with cluster-status.sh.
set -uo pipefail

# shellcheck source=infra/services/cluster-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster-lib.sh"

usage() { sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

die() {
  printf 'cluster-up: %s\n' "$1" >&2
  [[ -n ${2:-} ]] && show_tail "$2" 20
  exit 1
}

############################# Kafka #############################

# The jars, as up.sh fetches them (same pom, same hash file), if missing.
cl_kafka_libs() {
  local want tmp
  want=$(sha256sum <"$KAFKA_POM" | cut -c1-64)
  if [[ -f $KAFKA_LIBS/.pom.sha256 && $(<"$KAFKA_LIBS/.pom.sha256") == "$want" ]] &&
    compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" >/dev/null; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || apt_install maven || return 1
  mkdir -p "$KAFKA_DIR" "$CL_DIR"
  tmp="$KAFKA_DIR/libs.tmp"
  rm -rf "$tmp"
  note "kafka: fetching jars with maven (log: .data/cluster/mvn.log)"
  mvn -B -q -Dstyle.color=never -f "$KAFKA_POM" dependency:copy-dependencies \
    -DoutputDirectory="$tmp" >"$CL_DIR/mvn.log" 2>&1 || return 1
  printf '%s\n' "$want" >"$tmp/.pom.sha256"
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
}

cl_cluster_id() {
  local id=""
  [[ -s $CL_KAFKA_CLUSTER_ID ]] && id=$(tr -d '[:space:]' <"$CL_KAFKA_CLUSTER_ID")
  while [[ ! $id =~ ^[A-Za-z0-9_][A-Za-z0-9_-]{21}$ ]]; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    printf '%s\n' "$id" >"$CL_KAFKA_CLUSTER_ID"
  done
  echo "$id"
}

# cl_kafka_start N JAVA: render the properties, format once, start in the background.
cl_kafka_start() {
  local n=$1 java=$2 dir props cid
  dir=$(cl_kafka_dir "$n")
  props=$dir/server.properties
  mkdir -p "$dir/data" "$dir/logs"
  sed -e "s|@NODE_ID@|$n|g" -e "s|@BROKER_PORT@|$(cl_broker_port "$n")|g" \
    -e "s|@CONTROLLER_PORT@|$(cl_controller_port "$n")|g" -e "s|@VOTERS@|$(cl_voters)|g" \
    -e "s|@DATA_DIR@|$dir/data|g" "$CL_KAFKA_TEMPLATE" >"$props"
  if [[ ! -f $dir/data/meta.properties ]]; then
    cid=$(cl_cluster_id)
    note "kafka-$n: formatting $dir/data (cluster id $cid)"
    kafka_tool kafka.tools.StorageTool format -t "$cid" -c "$props" --ignore-formatted \
      >>"$dir/logs/format.log" 2>&1 || die "kafka-$n: storage format failed" "$dir/logs/format.log"
  fi
  note "kafka-$n: starting on 127.0.0.1:$(cl_broker_port "$n") (logs: .data/cluster/kafka-$n/logs)"
  # shellcheck disable=SC2086
  spawn_daemon "$(cl_kafka_pidfile "$n")" "$dir/logs/kafka.out" \
    "$java" $CL_KAFKA_HEAP -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dkafka.logs.dir="$dir/logs" -Dlog4j2.configurationFile="$KAFKA_LOG4J" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$props" || die "kafka-$n: the process did not start" "$dir/logs/kafka.out"
}

up_kafka() {
  local n java started=() t0=$EPOCHREALTIME i p
  for n in "${CL_KAFKA_NODES[@]}"; do
    cl_kafka_pid "$n" >/dev/null && continue
    for p in "$(cl_broker_port "$n")" "$(cl_controller_port "$n")"; do
      port_open "$p" && die "kafka-$n: port $p is taken by a process that is not ours"
    done
    started+=("$n")
  done
  if ((${#started[@]})); then
    java=$(find_java) || { apt_install openjdk-17-jre-headless && java=$(find_java); } || die "no java 17+"
    cl_kafka_libs || die "fetching the Kafka jars failed" "$CL_DIR/mvn.log"
    for n in "${started[@]}"; do cl_kafka_start "$n" "$java"; done
  fi
  for ((i = 0; i < CL_KAFKA_TIMEOUT * 2; i++)); do
    cl_kafka_healthy && break
    for n in "${CL_KAFKA_NODES[@]}"; do
      cl_kafka_pid "$n" >/dev/null || die "kafka-$n exited" "$(cl_kafka_dir "$n")/logs/server.log"
    done
    sleep 0.5
  done
  cl_kafka_healthy || die "the Kafka brokers do not all see each other within ${CL_KAFKA_TIMEOUT}s" \
    "$(cl_kafka_dir 1)/logs/server.log"
  printf '%-6s  up    %-6s  %s  (%s)\n' kafka "$(elapsed "$t0")" "$(cl_bootstrap)" \
    "$( ((${#started[@]})) && echo "started node ${started[*]}" || echo "already running")"
}

############################# Redis #############################

cl_redis_start() {
  local port=$1 dir
  dir=$(cl_redis_dir "$port")
  mkdir -p "$dir"
  rm -f "$dir/redis.pid"
  cat >"$dir/redis.conf" <<EOF
# written by infra/services/cluster-up.sh at every start: edit that script, not this file
port $port
bind 127.0.0.1
protected-mode no
daemonize yes
pidfile "$dir/redis.pid"
logfile "$dir/redis.log"
dir "$dir"
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout $CL_REDIS_NODE_TIMEOUT
# the slots of a stopped primary without a replica become unavailable, the others keep serving
cluster-require-full-coverage no
# a replica takes over however long it was disconnected
cluster-replica-validity-factor 0
# an append-only file, so a restarted node comes back with its data
appendonly yes
appendfsync everysec
save ""
maxmemory 256mb
maxmemory-policy noeviction
EOF
  note "redis-$port: starting (log: .data/cluster/redis-$port/redis.log)"
  redis-server "$dir/redis.conf" </dev/null >>"$dir/redis.log" 2>&1 8>&- 9>&- ||
    die "redis-$port: redis-server failed" "$dir/redis.log"
}

up_redis() {
  local p i started=() joined=() fresh=() t0=$EPOCHREALTIME addrs=()
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    apt_install redis-server redis-tools || die "apt-get install redis-server failed" "$DATA_DIR/apt.log"
  fi
  for p in "${CL_REDIS_PORTS[@]}"; do
    if ! cl_redis_pid "$p" >/dev/null; then
      port_open "$p" && die "redis-$p: port $p is taken by a process that is not ours"
      cl_redis_start "$p"
      started+=("$p")
    fi
  done
  for p in "${CL_REDIS_PORTS[@]}"; do
    for ((i = 0; i < CL_REDIS_TIMEOUT * 5; i++)); do
      cl_redis_ping "$p" && break
      sleep 0.2
    done
    cl_redis_ping "$p" || die "redis-$p: no PONG" "$(cl_redis_dir "$p")/redis.log"
    addrs+=("127.0.0.1:$p")
    if cl_redis_joined "$p"; then joined+=("$p"); else fresh+=("$p"); fi
  done
  if ((${#joined[@]} == 0)); then
    note "redis: creating the cluster (${#CL_REDIS_PORTS[@]} nodes, $CL_REDIS_REPLICAS replica per primary)"
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas "$CL_REDIS_REPLICAS" --cluster-yes \
      >"$CL_DIR/redis-create.log" 2>&1 || die "redis-cli --cluster create failed" "$CL_DIR/redis-create.log"
  elif ((${#fresh[@]})); then
    die "redis nodes ${fresh[*]} have no cluster state while ${joined[*]} do: run cluster-down.sh --purge and start again"
  fi
  for ((i = 0; i < CL_REDIS_TIMEOUT * 5; i++)); do
    cl_redis_healthy && break
    sleep 0.2
  done
  cl_redis_healthy || die "the Redis cluster is not ok within ${CL_REDIS_TIMEOUT}s" \
    "$(cl_redis_dir "${CL_REDIS_PORTS[0]}")/redis.log"
  printf '%-6s  up    %-6s  %s  (%s)\n' redis "$(elapsed "$t0")" "127.0.0.1:${CL_REDIS_PORTS[0]}-${CL_REDIS_PORTS[-1]}" \
    "$( ((${#started[@]})) && echo "started ${started[*]}" || echo "already running")"
}

############################# topic and env #############################

write_env() {
  cat >"$CL_ENV" <<EOF
# written by infra/services/cluster-up.sh: Parley against the cluster profile
CHAT_KAFKA_BROKERS=$(cl_bootstrap)
CHAT_KAFKA_REPLICATION_FACTOR=3
CHAT_KAFKA_MIN_INSYNC_REPLICAS=2
CHAT_KAFKA_PARTITIONS=$CL_PARTITIONS
CHAT_REDIS_URL=$(cl_redis_url)
EOF
}

up_topic() {
  local t0=$EPOCHREALTIME out
  # shellcheck disable=SC2046
  out=$(cd "$REPO_ROOT" && env $(grep -v '^#' "$CL_ENV") CHAT_DEV_AUTH=true CHAT_KAFKA_TOPIC="$CL_TOPIC" \
    go run ./cmd/chatctl topics 2>&1) || die "chatctl topics failed: $out"
  printf '%-6s  up    %-6s  %s\n' topic "$(elapsed "$t0")" "$out"
}

############################# main #############################

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  usage
  exit 0
fi
(($#)) || set -- all
want=()
for a in "$@"; do
  case $a in
    all) want+=(kafka redis topic) ;;
    kafka | redis | topic) want+=("$a") ;;
    *) usage >&2; exit 2 ;;
  esac
done

cl_take_lock
mkdir -p "$CL_DIR"
write_env
t_all=$EPOCHREALTIME
for s in kafka redis topic; do
  [[ " ${want[*]} " == *" $s "* ]] || continue
  if [[ $s == topic ]] && ! cl_kafka_healthy; then
    up_kafka
  fi
  "up_$s"
done
printf 'cluster up: %s (%s total); env: %s\n' "${want[*]}" "$(elapsed "$t_all")" "${CL_ENV#"$REPO_ROOT"/}"
