#!/usr/bin/env bash
# Stop nodes of the cluster profile that infra/services/cluster-up.sh started:
#
#   bash infra/services/cluster-down.sh [--kill] [--purge] [all|kafka|redis|kafka-N|redis-PORT]...
#
# Default: all nodes, gracefully (SIGTERM, then SIGKILL after a bound).
# --kill   SIGKILL at once (a crash, for failure tests)
# --purge  also delete .data/cluster (all nodes only): the next cluster-up.sh
#          formats Kafka and creates the Redis cluster from nothing
# Only processes named by pid files under .data/cluster are signalled; the
# single-node services on 5432/6379/9092 are never touched.
set -uo pipefail

# shellcheck source=infra/services/cluster-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster-lib.sh"

kill_now=0
purge=0
targets=()
for a in "$@"; do
  case $a in
    -h | --help) sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --kill) kill_now=1 ;;
    --purge) purge=1 ;;
    all) targets+=(kafka redis) ;;
    kafka | redis) targets+=("$a") ;;
    kafka-[1-3]) targets+=("$a") ;;
    redis-170[0-9][0-9]) targets+=("$a") ;;
    *) printf 'cluster-down: unknown target %s\n' "$a" >&2; exit 2 ;;
  esac
done
((${#targets[@]})) || targets=(kafka redis)
if ((purge)) && [[ " ${targets[*]} " != *" kafka "* || " ${targets[*]} " != *" redis "* ]]; then
  printf 'cluster-down: --purge stops and deletes everything; give no single nodes\n' >&2
  exit 2
fi

# stop NAME PID: TERM and wait (or KILL at once with --kill).
stop() {
  local name=$1 pid=$2
  if ((kill_now)); then
    kill -KILL "$pid" 2>/dev/null
    wait_pid_gone "$pid" 10 || { say "$name could not kill pid $pid" >&2; return 1; }
    say "$(printf '%-12s' "$name") killed (pid $pid)"
  else
    stop_pid "$pid" "$name" 60 || { say "$name could not stop pid $pid" >&2; return 1; }
    say "$(printf '%-12s' "$name") stopped (pid $pid)"
  fi
}

down_kafka_node() {
  local n=$1 pid
  if pid=$(cl_kafka_pid "$n"); then
    stop "kafka-$n" "$pid" || return 1
  else
    say "$(printf '%-12s' "kafka-$n") not running"
  fi
  rm -f "$(cl_kafka_pidfile "$n")"
}

down_redis_node() {
  local p=$1 pid
  if pid=$(cl_redis_pid "$p"); then
    stop "redis-$p" "$pid" || return 1
  else
    say "$(printf '%-12s' "redis-$p") not running"
  fi
}

cl_take_lock
rc=0
for t in "${targets[@]}"; do
  case $t in
    kafka)
      # all brokers at once: one stopped after the others would wait for a
      # quorum that is gone before it could shut down cleanly
      declare -A kpids=()
      for n in "${CL_KAFKA_NODES[@]}"; do
        if pid=$(cl_kafka_pid "$n"); then
          kpids[$n]=$pid
          ((kill_now)) || kill -TERM "$pid" 2>/dev/null
        fi
      done
      for n in "${CL_KAFKA_NODES[@]}"; do
        if [[ -n ${kpids[$n]:-} ]]; then
          stop "kafka-$n" "${kpids[$n]}" || rc=1
          rm -f "$(cl_kafka_pidfile "$n")"
        else
          down_kafka_node "$n" || rc=1
        fi
      done
      ;;
    redis) for p in "${CL_REDIS_PORTS[@]}"; do down_redis_node "$p" || rc=1; done ;;
    kafka-*) down_kafka_node "${t#kafka-}" || rc=1 ;;
    redis-*) down_redis_node "${t#redis-}" || rc=1 ;;
  esac
done
if ((purge && rc == 0)); then
  # keep the lock file's directory; everything else goes
  find "$CL_DIR" -mindepth 1 -maxdepth 1 ! -name .lock -exec rm -rf {} +
  say "purged       .data/cluster"
fi
exit "$rc"
