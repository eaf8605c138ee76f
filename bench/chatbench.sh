#!/usr/bin/env bash
# Runs bin/chatbench with the open-files limit raised as far as allowed: each
# client connection is a file descriptor. (Task's shell has no ulimit.)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cd "$root"
exec "$root/bin/chatbench" "$@"
