#!/usr/bin/env bash
# Parley against the Socket.IO + Redis adapter peer on the same workload
# (Socket.IO, 200 groups of 10, two nodes each), back to back on fresh
# systems: chatbench compare at RATE msg/s (latencies and CPU per message of
# every server process), then the ramp (x1.5 every 10 s from 250 msg/s
# until p99 delivery passes 100 ms) against each. About 6 minutes. Run it
# alone on the machine (docs/benchmarks.md).
#
#   bash bench/race.sh [RATE]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
rate="${1:-1000}"
stamp="$(date +%Y%m%d-%H%M%S)"
out="bench/results/race-$stamp"
secret=parley-dev-secret-not-for-production
ramp=(ramp --proto sio --groups 200 --members 10 --start-rate 250 --factor 1.5 --step 10s --p99-bound 100ms --jwt-secret "$secret")
trap 'bash bench/peers/run.sh down >/dev/null 2>&1 || true; bash bench/run.sh down >/dev/null 2>&1 || true' EXIT
uptime
bash bench/run.sh up >/dev/null
bash bench/peers/run.sh up >/dev/null
bash bench/chatbench.sh compare --nodes http://127.0.0.1:18080,http://127.0.0.1:18081 --groups 200 --members 10 \
  --rate "$rate" --duration 20s --warmup 5s --jwt-secret "$secret" --out "$out-compare.json" 2>&1 | sed -n '/== compare/,$p'
bash bench/peers/run.sh down >/dev/null
bash bench/run.sh up >/dev/null # fresh: the compare's backlog and state are gone
bash bench/chatbench.sh "${ramp[@]}" --nodes http://127.0.0.1:18080,http://127.0.0.1:18081 --out "$out-ramp-parley.json" 2>&1 |
  grep -E '^(step|[0-9]+ )|highest rate|^process|^[a-z].*µs|^(fanout|gateway|projector|redis|kafka|postgres|machine|chatbench)' || true
bash bench/run.sh down >/dev/null
bash bench/peers/run.sh up >/dev/null
pids="peer-1=$(cat bench/.run/peer-1.pid),peer-2=$(cat bench/.run/peer-2.pid)"
bash bench/chatbench.sh "${ramp[@]}" --nodes http://127.0.0.1:18380,http://127.0.0.1:18381 --server-pids "$pids" \
  --out "$out-ramp-peer.json" 2>&1 | grep -E '^(step|[0-9]+ )|highest rate' || true
echo "== highest rate with p99 delivery < 100 ms (Socket.IO, 200 groups of 10) =="
for s in parley peer; do
  printf '%-7s %s\n' "$s" "$(grep -o '"best_rate_under_bound": *[0-9.]*' "$out-ramp-$s.json" | grep -o '[0-9.]*$') msg/s"
done
echo "reports: $out-*.json"
uptime
