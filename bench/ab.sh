#!/usr/bin/env bash
# Before/after on one machine: alternates two chatd binaries (A, B) for
# ROUNDS rounds, each on a fresh bench system, with the same chatbench
# arguments, so the noise of a shared machine falls on both alike.
#
#   bash bench/ab.sh /tmp/old/chatd /tmp/new/chatd 2 fanout --rate 2000 --duration 20s
#
# Reports go to bench/results/ab-<label>-<A|B>-<round>.json (AB_LABEL, default "ab").
# The binaries must be named chatd (chatbench finds servers by name).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
a="$1" b="$2" rounds="$3"; shift 3
label="${AB_LABEL:-ab}"
for r in $(seq 1 "$rounds"); do
  for v in A B; do
    bin="$a"; [ "$v" = B ] && bin="$b"
    BENCH_CHATD="$bin" bash "$root/bench/run.sh" up >/dev/null
    "$root/bin/chatbench" "$@" --jwt-secret parley-dev-secret-not-for-production --label "$label $v round $r ($bin)" \
      --out "$root/bench/results/ab-$label-$v-$r.json" 2>/dev/null | grep -E "^==|throughput|send->|check|machine" | sed "s/^/[$v$r] /"
    bash "$root/bench/run.sh" down >/dev/null
  done
done
