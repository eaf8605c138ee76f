#!/usr/bin/env bash
# Stop the local services that infra/services/up.sh started from <repo>/.data:
#
#   bash infra/services/down.sh [all|postgres|redis|kafka]...     (default: all)
#
# Only processes named by a pid file under .data (Kafka, Redis) or running our
# own cluster in .data/postgres are stopped. Services that were already running
# before (a system PostgreSQL or Redis, say) are left alone. Data is kept;
# `rm -rf .data` after this starts from nothing.
set -uo pipefail

# shellcheck source=infra/services/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

down_kafka() {
  local pid
  if pid=$(kafka_own_pid); then
    if stop_pid "$pid" kafka 60; then
      say "kafka     stopped (pid $pid)"
    else
      say "kafka     could not stop pid $pid" >&2
      return 1
    fi
  else
    say "kafka     not running from .data"
  fi
  rm -f "$KAFKA_PID"
  kafka_probe && say "          (a Kafka not started by us still answers on localhost:$KAFKA_PORT: left alone)"
  return 0
}

down_redis() {
  local pid
  if pid=$(redis_own_pid); then
    # SIGTERM: redis saves its snapshot and exits
    if stop_pid "$pid" redis 30; then
      say "redis     stopped (pid $pid)"
    else
      say "redis     could not stop pid $pid" >&2
      return 1
    fi
  else
    say "redis     not running from .data"
  fi
  rm -f "$REDIS_PID"
  redis_ping && say "          (a Redis not started by us still answers on localhost:$REDIS_PORT: left alone)"
  return 0
}

down_postgres() {
  local pid ver bindir
  if ! id postgres >/dev/null 2>&1; then
    say "postgres  not installed"
    return 0
  fi
  pg_paths
  if pid=$(pg_own_pid); then
    ver=$(cat "$PGDATA_DIR/PG_VERSION" 2>/dev/null)
    bindir=/usr/lib/postgresql/$ver/bin
    [[ -x $bindir/pg_ctl ]] || bindir=$(pg_bindir)
    if as_postgres "$bindir/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 60 stop >/dev/null 2>&1 ||
      stop_pid "$pid" postgres 30; then
      say "postgres  stopped own cluster (pid $pid)"
    else
      say "postgres  could not stop pid $pid (log: $PG_LOG)" >&2
      return 1
    fi
  else
    say "postgres  own cluster not running"
  fi
  pg_tcp_state && say "          (a PostgreSQL not started by us still answers on localhost:$PG_PORT: left alone)"
  return 0
}

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit 0
fi
mapfile -t wanted < <(parse_services "$@")
((${#wanted[@]})) || exit 2

take_lock
rc=0

# reverse order of up: Kafka first, the database last
for ((k = ${#wanted[@]} - 1; k >= 0; k--)); do
  case ${wanted[k]} in
    kafka) down_kafka || rc=1 ;;
    redis) down_redis || rc=1 ;;
    postgres) down_postgres || rc=1 ;;
  esac
done
exit "$rc"
