#!/usr/bin/env bash
# Tell whether the local services answer:
#
#   bash infra/services/status.sh [all|postgres|redis|kafka]...     (default: all)
#
# postgres: `select 1` through postgres://localhost:5432/chat?sslmode=disable as this user;
# redis: PING -> PONG on localhost:6379; kafka: a Metadata request on localhost:9092.
# Exit 0 only if every service asked for answers.
set -uo pipefail

# shellcheck source=infra/services/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit 0
fi
mapfile -t wanted < <(parse_services "$@")
((${#wanted[@]})) || exit 2

rc=0
line() { printf '%-8s  %-4s  %s\n' "$1" "$2" "$3"; }

for svc in "${wanted[@]}"; do
  case $svc in
    postgres)
      who="not started by us"
      if id postgres >/dev/null 2>&1; then
        pg_paths
        pid=$(pg_own_pid) && who="own cluster, pid $pid, log ${PG_LOG#"$REPO_ROOT"/}"
      fi
      if pg_query_ok; then
        line postgres up "localhost:$PG_PORT db chat ($who)"
      elif pg_tcp_state; then
        line postgres DOWN "localhost:$PG_PORT answers, but '$PG_URL' does not let $(id -un) run a query"
        rc=1
      else
        line postgres DOWN "nothing answers on localhost:$PG_PORT"
        rc=1
      fi
      ;;
    redis)
      who="not started by us"
      pid=$(redis_own_pid) && who="ours, pid $pid, log ${REDIS_LOG#"$REPO_ROOT"/}"
      if redis_ping; then
        line redis up "localhost:$REDIS_PORT ($who)"
      else
        line redis DOWN "no PONG from localhost:$REDIS_PORT"
        rc=1
      fi
      ;;
    kafka)
      who="not started by us"
      pid=$(kafka_own_pid) && who="ours, pid $pid, logs ${KAFKA_LOGS#"$REPO_ROOT"/}"
      if kafka_probe; then
        line kafka up "localhost:$KAFKA_PORT ($who)"
      elif [[ $who != "not started by us" ]]; then
        line kafka DOWN "process runs ($who) but no answer to a Metadata request on localhost:$KAFKA_PORT"
        rc=1
      else
        line kafka DOWN "no answer to a Metadata request on localhost:$KAFKA_PORT"
        rc=1
      fi
      ;;
  esac
done
exit "$rc"
