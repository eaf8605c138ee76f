#!/usr/bin/env bash
# Runs a local Parley: two gateway nodes (:8080, :8081), a fanout and a
# projector process, with dev auth. Ctrl-C stops them all.
# e2e/run_script_test.go runs it with PARLEY_BIN, PARLEY_RUN_LOGS and
# PARLEY_RUN_PORTS (the eight ports below, in order) on free ports.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${PARLEY_BIN:-$root/bin}"
logs="${PARLEY_RUN_LOGS:-$root/.data/run}"
read -r g1 g2 fo pr o1 o2 o3 o4 <<<"${PARLEY_RUN_PORTS:-8080 8081 8090 8091 9191 9192 9193 9194}"
mkdir -p "$logs"
export CHAT_DEV_AUTH="${CHAT_DEV_AUTH:-true}"
export CHAT_LOG_FORMAT="${CHAT_LOG_FORMAT:-json}"
# The browser client may fail over from one gateway to the other: a page
# served by :8080 then opens a WebSocket to :8081, a cross-origin request.
export CHAT_ALLOWED_ORIGINS="${CHAT_ALLOWED_ORIGINS:-http://localhost:$g1,http://localhost:$g2,http://127.0.0.1:$g1,http://127.0.0.1:$g2}"
# The nodes the page may fail over to (it connects to no other host).
export CHAT_WEB_NODES="${CHAT_WEB_NODES:-http://localhost:$g1,http://localhost:$g2}"

"$bin/chatctl" migrate
"$bin/chatctl" topics

pids=()
stop() {
  echo; echo "stopping nodes..."
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

# Four nodes, Kafka, Redis and Postgres share this machine's cores: one Go P
# per node (unless GOMAXPROCS is set), as a one-CPU container limit would
# give, spares the cross-core wake-ups of four runtimes that each assume
# every core (docs/runbook.md, "Sizing").
start() { # name addr roles ops-addr
  CHAT_NODE_ID="$1" CHAT_HTTP_ADDR="$2" CHAT_ROLES="$3" CHAT_OPS_ADDR="$4" CHAT_PPROF=true GOMAXPROCS="${GOMAXPROCS:-1}" \
    "$bin/chatd" >"$logs/$1.log" 2>&1 &
  pids+=($!)
}
# Everything listens on loopback only: this is a development system (dev
# tokens for anyone, no store passwords). The ops listeners (metrics,
# readiness details, pprof) are 127.0.0.1:9191-9194 (9092 and 9093 are
# the local Kafka's).
start gateway-1 "127.0.0.1:$g1" gateway "127.0.0.1:$o1"
start gateway-2 "127.0.0.1:$g2" gateway "127.0.0.1:$o2"
start fanout-1 "127.0.0.1:$fo" fanout "127.0.0.1:$o3"
start projector-1 "127.0.0.1:$pr" projector "127.0.0.1:$o4"

for port in "$g1" "$g2" "$fo" "$pr"; do
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 || { echo "node on :$port is not ready; see $logs"; exit 1; }
done

cat <<MSG

Parley is running.
  Chat in a browser:   http://localhost:$g1/
                       (and http://localhost:$g2/; the page fails over to the other node)
  WebSocket:           ws://localhost:$g1/ws   ws://localhost:$g2/ws
  Socket.IO:           http://localhost:$g1/socket.io/   (official Socket.IO clients connect unchanged)
  HTTP API:            http://localhost:$g1/api/v1/conversations   (Authorization: Bearer <token>)
  Dev token:           curl -s -XPOST localhost:$g1/api/v1/dev/token -d '{"user_id":"alice"}'
  Health:              http://localhost:$g1/readyz   (fanout :$fo, projector :$pr)
  Ops (loopback):      http://127.0.0.1:$o1/metrics  /readyz with errors  /debug/pprof/  ($o1-$o4, one per node)
  Open on loopback only, dev auth on: a development system, not a deployment (docs/security.md).
  Logs:                $logs/
Press Ctrl-C to stop the nodes (services keep running; 'go tool task services:down' stops them).
MSG
wait -n "${pids[@]}" || true
echo "a node exited; see $logs"
