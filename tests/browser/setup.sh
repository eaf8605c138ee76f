#!/usr/bin/env bash
# Installs what the browser tests need: Debian's chromium (if missing) and the
# pinned npm packages (npm ci). Called by e2e/browser_test.go; safe to rerun.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium (apt-get)..."
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y --no-install-recommends chromium fonts-liberation fonts-dejavu-core; then
    apt-get update
    apt-get install -y --no-install-recommends chromium fonts-liberation fonts-dejavu-core
  fi
fi
/usr/bin/chromium --version

command -v node >/dev/null || { echo "node is missing (apt-get install nodejs npm)"; exit 1; }
npm ci --prefix "$here" --no-audit --no-fund
