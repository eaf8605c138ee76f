#!/usr/bin/env bash
# Starts or stops the Socket.IO + Redis adapter peer: two Node.js processes
# on 127.0.0.1:18380 and :18381 sharing the local Redis (key prefix
# bench-peer). Installs its npm packages (package-lock.json) when missing.
#
#   bash bench/peers/run.sh up | down
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
run="$here/../.run"
mkdir -p "$run"
ports=(18380 18381)

up() {
  down quiet
  if [ ! -d "$here/node_modules/socket.io" ]; then
    (cd "$here" && npm ci --no-audit --no-fund >/dev/null)
  fi
  ulimit -n "$(ulimit -Hn)"
  for i in "${!ports[@]}"; do
    PORT="${ports[$i]}" JWT_SECRET="${CHAT_JWT_SECRET:-parley-dev-secret-not-for-production}" \
      nohup node "$here/server.js" >"$run/peer-$((i + 1)).log" 2>&1 &
    echo $! >"$run/peer-$((i + 1)).pid"
  done
  for p in "${ports[@]}"; do
    for _ in $(seq 1 100); do
      curl -fsS "http://127.0.0.1:$p/socket.io/?EIO=4&transport=polling" >/dev/null 2>&1 && break
      sleep 0.1
    done
    curl -fsS "http://127.0.0.1:$p/socket.io/?EIO=4&transport=polling" >/dev/null 2>&1 || { echo "peer on :$p is not up; see $run/peer-*.log"; down; exit 1; }
  done
  echo "peer up: http://127.0.0.1:18380 http://127.0.0.1:18381 (socket.io $(node -p "require('$here/node_modules/socket.io/package.json').version"), redis adapter)"
}

down() {
  for f in "$run"/peer-*.pid; do
    [ -f "$f" ] || continue
    pid="$(cat "$f")"
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = node ]; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
  [ "${1:-}" = quiet ] || echo "peer down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
