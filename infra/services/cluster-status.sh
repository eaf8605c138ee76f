#!/usr/bin/env bash
# Tell whether the cluster profile (infra/services/cluster-up.sh) is healthy:
#
#   bash infra/services/cluster-status.sh
#
# One line per Kafka node (pid, port, how many brokers it sees) and per Redis
# node (pid, role, slots, cluster_state), then the events topic's partition
# leaders and in-sync replicas. Exit 0 only when every node answers, every
# broker sees all three brokers and the Redis cluster serves every slot.
set -uo pipefail

# shellcheck source=infra/services/cluster-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster-lib.sh"

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit 0
fi

rc=0
line() { printf '%-12s %-5s %s\n' "$1" "$2" "$3"; }

for n in "${CL_KAFKA_NODES[@]}"; do
  port=$(cl_broker_port "$n")
  pid=$(cl_kafka_pid "$n") || pid="-"
  if c=$(cl_kafka_brokers "$port"); then
    state=up
    [[ $c == "${#CL_KAFKA_NODES[@]}" ]] || { state=DEGR; rc=1; }
    line "kafka-$n" "$state" "127.0.0.1:$port pid $pid, sees $c/${#CL_KAFKA_NODES[@]} brokers"
  else
    line "kafka-$n" DOWN "127.0.0.1:$port pid $pid, no answer to a Metadata request"
    rc=1
  fi
done

for p in "${CL_REDIS_PORTS[@]}"; do
  pid=$(cl_redis_pid "$p") || pid="-"
  if cl_redis_ping "$p"; then
    role=$(cl_redis "$p" role | head -n1)
    slots=$(cl_redis "$p" cluster nodes | awk '$3 ~ /myself/ {s=""; for (i = 9; i <= NF; i++) s = s " " $i; print s}')
    st=$(cl_redis_info "$p" cluster_state)
    [[ $st == ok ]] || rc=1
    line "redis-$p" up "pid $pid, $role${slots:+, slots$slots}, cluster_state:$st"
  else
    line "redis-$p" DOWN "pid $pid, no PONG"
    rc=1
  fi
done

if cl_kafka_brokers "$(cl_broker_port 1)" >/dev/null && [[ -d $KAFKA_LIBS ]]; then
  printf '\ntopic %s:\n' "$CL_TOPIC"
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$(cl_bootstrap)" \
    --describe --topic "$CL_TOPIC" 2>/dev/null | sed 's/^/  /' || say "  (not created yet: cluster-up.sh topic)"
fi
exit "$rc"
