#!/usr/bin/env bash
# Installs what the browser tests need: Debian's chromium (if missing) and the
# pinned npm packages (npm ci). Called by e2e/browser_test.go; safe to rerun,
# and serialised, since several test runs may share this checkout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

exec 9>"/tmp/parley-browser-setup-$(printf %s "$here" | md5sum | cut -c1-12).lock"
flock -w 600 9

if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium (apt-get)..."
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y chromium fonts-liberation fonts-dejavu-core; then
    apt-get update
    apt-get install -y chromium fonts-liberation fonts-dejavu-core
  fi
fi
# Reactions are emoji: without a colour emoji font they render as boxes in
# the screenshots (the tests do not depend on it).
if ! dpkg -s fonts-noto-color-emoji >/dev/null 2>&1; then
  echo "installing an emoji font (apt-get)..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y fonts-noto-color-emoji || { apt-get update && apt-get install -y fonts-noto-color-emoji; } ||
    echo "no emoji font: emoji render as boxes in screenshots"
fi
/usr/bin/chromium --version 2>/dev/null

command -v node >/dev/null || { echo "node is missing (apt-get install nodejs npm)"; exit 1; }
# npm ci replaces node_modules: run it when the lock file changed since the
# last install, not under a test run that is using them.
stamp="$here/node_modules/.parley-lock"
if ! cmp -s "$here/package-lock.json" "$stamp"; then
  npm ci --prefix "$here" --no-audit --no-fund
  cp "$here/package-lock.json" "$stamp"
fi
