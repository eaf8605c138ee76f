#!/usr/bin/env bash
# Starts, stops or checks the benchmark system: two gateways, one fanout and
# one projector (bin/chatd), on ports 18080+ with their own Kafka topic,
# Postgres schema, Redis prefix and consumer groups, so a benchmark never
# disturbs `go tool task run` (8080/8081/8090/8091) or other engineers' tests.
#
#   bash bench/run.sh up       # build, migrate, create the topic, start the nodes
#   bash bench/run.sh down     # stop the nodes this script started
#   bash bench/run.sh status
#
# Knobs (environment): BENCH_PARTITIONS, BENCH_SCHEMA (a read model to use and keep;
# default a fresh bench_<id> that `down` drops), BENCH_KEEP (keep topic, keys and schema),
# BENCH_LOG_LEVEL, BENCH_LINGER, BENCH_CHATD (another chatd binary, for before/after runs),
# BENCH_GOMAXPROCS (1; empty: Go's default), BENCH_LAYOUT (split: the four processes above;
# nodes: two nodes with every role), and any CHAT_* variable, which the nodes inherit.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/bin"
run="$root/bench/.run"
mkdir -p "$run"

# Every `up` gets a fresh topic, Redis prefix, consumer groups and read
# model, so no backlog or state of an earlier run can skew this one (a read
# model that grew past shared_buffers costs Postgres twice as much a
# message: docs/benchmarks.md); `down` deletes them.
id="$(date +%s)"
export BENCH_RUN="$id"                          # chatbench finds the nodes by it
export CHAT_DEV_AUTH=true                       # tokens: chatbench --jwt-secret with the dev secret
export CHAT_KAFKA_TOPIC="${BENCH_TOPIC:-bench.$id.events}"
export CHAT_KAFKA_PARTITIONS="${BENCH_PARTITIONS:-8}"
export CHAT_DB_SCHEMA="${BENCH_SCHEMA:-bench_$id}"
export CHAT_REDIS_PREFIX="${BENCH_PREFIX:-bench$id}"
export CHAT_GROUP_PREFIX="bench.$id."
export CHAT_LOG_FORMAT=json
# Per-connection info lines (open/close) would cost the shared CPU at 10k+
# connections; warnings and errors still show.
export CHAT_LOG_LEVEL="${BENCH_LOG_LEVEL:-warn}"
# The bench measures the system, not the per-connection limiter.
export CHAT_RATE_LIMIT="${CHAT_RATE_LIMIT:-100000}" CHAT_RATE_BURST="${CHAT_RATE_BURST:-100000}"
export CHAT_MAX_CONNS="${CHAT_MAX_CONNS:-200000}"
if [ -n "${BENCH_LINGER:-}" ]; then export CHAT_KAFKA_LINGER="$BENCH_LINGER"; fi
# Every role shares this machine's cores with the others, Kafka, Redis,
# Postgres and chatbench, and no cgroup limit tells Go so: each runtime
# would run a P per core and pay for the cross-core wake-ups and spinning.
# One P per node is the shape of a container with a one-CPU limit, where
# Go sets GOMAXPROCS itself (docs/benchmarks.md, "Session 12").
procs="${BENCH_GOMAXPROCS-1}"

ports=(18080 18081 18090 18091)
names=(gateway-1 gateway-2 fanout-1 projector-1)
roles=(gateway gateway fanout projector)
# BENCH_LAYOUT=nodes: two nodes with every role each (chatd's default
# CHAT_ROLES), the shape of an auto-scaling group of identical nodes.
if [ "${BENCH_LAYOUT:-split}" = nodes ]; then
  ports=(18080 18081)
  names=(node-1 node-2)
  roles=(gateway,fanout,projector gateway,fanout,projector)
fi

up() {
  # down and chatbench's /proc figures find the nodes by process name.
  if [ -n "${BENCH_CHATD:-}" ] && [ "$(basename "$BENCH_CHATD")" != chatd ]; then
    echo "BENCH_CHATD must name a file called chatd (got $BENCH_CHATD): copy it to some-dir/chatd"; exit 1
  fi
  down quiet
  mkdir -p "$bin"
  (cd "$root" && go build -o "$bin/" ./cmd/chatd ./cmd/chatctl ./cmd/chatbench)
  "$bin/chatctl" migrate >"$run/migrate.log" 2>&1 || { cat "$run/migrate.log"; exit 1; }
  "$bin/chatctl" topics >"$run/topics.log" 2>&1 || { cat "$run/topics.log"; exit 1; }
  # Each connection is a file descriptor.
  ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  for i in "${!names[@]}"; do
    # Ops listener (metrics, pprof) on every node: gateway-1 :18060,
    # gateway-2 :18061, fanout :18062, projector :18063 (CHAT_PPROF_ADDR:
    # pprof there for BENCH_CHATD builds from before the ops listener).
    local ops="127.0.0.1:$((18060 + i))"
    CHAT_NODE_ID="${names[$i]}" CHAT_HTTP_ADDR="127.0.0.1:${ports[$i]}" CHAT_ROLES="${roles[$i]}" \
      CHAT_OPS_ADDR="$ops" CHAT_PPROF=true CHAT_PPROF_ADDR="$ops" \
      nohup env ${procs:+GOMAXPROCS=$procs} "${BENCH_CHATD:-$bin/chatd}" >"$run/${names[$i]}.log" 2>&1 &
    echo $! >"$run/${names[$i]}.pid"
  done
  for p in "${ports[@]}"; do
    for _ in $(seq 1 150); do
      curl -fsS "http://127.0.0.1:$p/readyz" >/dev/null 2>&1 && break
      sleep 0.2
    done
    curl -fsS "http://127.0.0.1:$p/readyz" >/dev/null 2>&1 || { echo "node on :$p is not ready; see $run/*.log"; down; exit 1; }
  done
  echo "bench system up: ws://127.0.0.1:18080/ws ws://127.0.0.1:18081/ws (pprof http://127.0.0.1:18060-18063/debug/pprof/)"
  local drop="" # a schema named by BENCH_SCHEMA is the caller's to keep
  [ -n "${BENCH_SCHEMA:-}" ] || drop="$CHAT_DB_SCHEMA"
  printf 'topic=%s\nprefix=%s\nschema=%s\n' "$CHAT_KAFKA_TOPIC" "$CHAT_REDIS_PREFIX" "$drop" >"$run/env"
  echo "topic $CHAT_KAFKA_TOPIC ($CHAT_KAFKA_PARTITIONS partitions), schema $CHAT_DB_SCHEMA, redis prefix $CHAT_REDIS_PREFIX, logs $run/"
}

down() {
  # Every pid file, whichever layout started it.
  for f in "$run"/*.pid; do
    [ -f "$f" ] || continue
    pid="$(cat "$f")"
    # Only a chatd that this script started (the pid file may be stale).
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = chatd ]; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
  if [ -f "$run/env" ] && [ -z "${BENCH_KEEP:-}" ]; then
    schema=""
    # shellcheck disable=SC1091
    . "$run/env"
    "$bin/chatbench" cleanup --topic "$topic" --redis-prefix "$prefix" ${schema:+--schema "$schema"} >/dev/null || true
    rm -f "$run/env"
  fi
  [ "${1:-}" = quiet ] || echo "bench system down"
}

status() {
  for i in "${!names[@]}"; do
    s=down
    curl -fsS "http://127.0.0.1:${ports[$i]}/readyz" >/dev/null 2>&1 && s=ready
    echo "${names[$i]} :${ports[$i]} $s"
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
