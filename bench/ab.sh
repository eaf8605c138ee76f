#!/usr/bin/env bash
# Before/after on one machine: alternates two chatd binaries (A, B) for
# ROUNDS rounds, each on a fresh bench system, with the same chatbench
# arguments, so the noise of a shared machine falls on both alike.
#
#   bash bench/ab.sh /tmp/old/chatd /tmp/new/chatd 2 fanout --rate 2000 --duration 20s
#
# Reports go to bench/results/ab-<label>-<A|B>-<round>.json (AB_LABEL, default "ab").
# After each run it prints every server process's CPU per message, the
# records a produce request carried and Redis's read events per message.
# The binaries must be named chatd (chatbench finds servers by name).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
a="$1" b="$2" rounds="$3"; shift 3
label="${AB_LABEL:-ab}"
redis_reads() { redis-cli info stats | tr -d '\r' | sed -n 's/^total_reads_processed://p'; }
# hops prints, for a report, each server process's CPU per message, the
# records a produce request carried (the gateways' ops listeners, :18060
# and :18061) and Redis's read events per message.
hops() {
  local m18060 m18061
  m18060=$(curl -s 127.0.0.1:18060/metrics) m18061=$(curl -s 127.0.0.1:18061/metrics)
  printf '%s\n%s\n' "$m18060" "$m18061" | python3 -c '
import json, sys
rep, reads0, reads1 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
j = json.load(open(rep)); w = j["work_msgs"]
tot = {"sum": 0.0, "count": 0.0}
for line in sys.stdin:
    for k in tot:
        if line.startswith("parley_produce_batch_records_" + k + " "):
            tot[k] += float(line.split()[1])
procs = [p for p in j.get("servers", []) + j.get("services", []) if not p["name"].startswith("machine")]
print("µs/msg " + " ".join("%s=%.1f" % (p["name"].split(" ")[0], p["cpu_s"] * 1e6 / w) for p in procs)
      + " | servers %.0f" % sum(p["cpu_s"] * 1e6 / w for p in procs))
print("records/produce %.2f  redis reads/msg %.2f" % (tot["sum"] / max(tot["count"], 1), (reads1 - reads0) / max(j["acked"], 1)))
' "$1" "$2" "$(redis_reads)"
}
for r in $(seq 1 "$rounds"); do
  for v in A B; do
    bin="$a"; [ "$v" = B ] && bin="$b"
    BENCH_CHATD="$bin" bash "$root/bench/run.sh" up >/dev/null
    reads0=$(redis_reads)
    "$root/bin/chatbench" "$@" --jwt-secret parley-dev-secret-not-for-production --label "$label $v round $r ($bin)" \
      --out "$root/bench/results/ab-$label-$v-$r.json" 2>/dev/null | grep -E "^==|throughput|send->|check|machine" | sed "s/^/[$v$r] /"
    hops "$root/bench/results/ab-$label-$v-$r.json" "$reads0" | sed "s/^/[$v$r] /"
    bash "$root/bench/run.sh" down >/dev/null
  done
done
