#!/usr/bin/env bash
# Generates the passwords of the compose deployment into deploy/.env
# (git-ignored), which `docker compose` reads from the compose file's
# directory: the compose file ships no secret and refuses to start without
# them. See docs/deploy.md, "Compose".
#
#   deploy/compose-secrets.sh && docker compose -f deploy/docker-compose.yml up -d --build
set -euo pipefail
umask 077
env_file="$(cd "$(dirname "$0")" && pwd)/.env"
if [ -e "$env_file" ]; then
  echo "compose-secrets: $env_file exists; delete it (and the containers: docker compose down) to generate new passwords" >&2
  exit 1
fi
rand_hex() {
  if command -v openssl >/dev/null 2>&1; then openssl rand -hex "$1"; else od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; fi
}
{
  echo "CHAT_JWT_SECRET=$(rand_hex 32)"
  echo "PARLEY_KAFKA_PASSWORD=$(rand_hex 24)"
  echo "PARLEY_REDIS_PASSWORD=$(rand_hex 24)"
  echo "PARLEY_PG_PASSWORD=$(rand_hex 24)"
  for role in GATEWAY FANOUT PROJECTOR ANALYST; do
    echo "PARLEY_PG_${role}_PASSWORD=$(rand_hex 24)"
  done
} >"$env_file"
echo "compose-secrets: wrote $env_file"
