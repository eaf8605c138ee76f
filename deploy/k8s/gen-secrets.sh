#!/usr/bin/env bash
# Generates every secret of a Parley deployment into deploy/k8s/secrets/
# (git-ignored), which kustomization.yaml's secretGenerator reads: nothing
# secret is shipped in the repository, and `kubectl apply -k deploy/k8s`
# fails until this has run. See docs/deploy.md, "Secrets".
#
#   CA=/path/to/stores-ca.pem deploy/k8s/gen-secrets.sh [OUTPUT_DIR]
#
# Inputs (environment; the defaults match configmap.yaml):
#   CA                  PEM of the CA that signs the stores' TLS certificates,
#                       or per store: KAFKA_CA, REDIS_CA, POSTGRES_CA (required)
#   PG_HOST (postgres)  PG_PORT (5432)  PG_DB (chat)  PG_OWNER (parley)
#   REDIS_ADDR (redis:6379)  REDIS_USER (parley)  REDIS_PREFIX (parley, = CHAT_REDIS_PREFIX)
#   KAFKA_USER (parley, = CHAT_KAFKA_SASL_USER)  ROLE_PREFIX (parley, = the Job's roles --prefix)
#
# It writes the Secrets' env files and files, the CA bundle, and STORES.txt:
# what to create in Kafka, Redis and Postgres with these passwords. It
# refuses to overwrite an existing directory: new passwords must reach the
# stores too (docs/runbook.md, "Rotate the store passwords").
set -euo pipefail
umask 077

here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/secrets}"
if [ -e "$out/jwt.env" ]; then
  echo "gen-secrets: $out already holds secrets; delete it to generate new ones (then update the stores)" >&2
  exit 1
fi

: "${PG_HOST:=postgres}" "${PG_PORT:=5432}" "${PG_DB:=chat}" "${PG_OWNER:=parley}"
: "${REDIS_ADDR:=redis:6379}" "${REDIS_USER:=parley}" "${REDIS_PREFIX:=parley}"
: "${KAFKA_USER:=parley}" "${ROLE_PREFIX:=parley}"
KAFKA_CA="${KAFKA_CA:-${CA:-}}" REDIS_CA="${REDIS_CA:-${CA:-}}" POSTGRES_CA="${POSTGRES_CA:-${CA:-}}"

# The Redis ACL rules of Parley's user: redisstore.ACLRules (deploy_test
# checks that they agree).
ACL_RULES="resetkeys ~${REDIS_PREFIX}:* resetchannels &${REDIS_PREFIX}:* -@all +@read +@write +@connection +@transaction +eval +evalsha +script|load +script|exists +spublish +ssubscribe +sunsubscribe -@dangerous +select +cluster|slots +cluster|shards +cluster|nodes +cluster|info +cluster|myid"

# rand_hex N: N random bytes as 2N hex digits (URL-safe, quote-safe).
rand_hex() {
  if command -v openssl >/dev/null 2>&1; then
    openssl rand -hex "$1"
  else
    od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'
  fi
}

check_ca() { # name file
  if [ -z "$2" ]; then
    echo "gen-secrets: set CA (or $1) to the PEM of the CA that signs the stores' certificates" >&2
    exit 1
  fi
  if ! grep -q -- '-----BEGIN CERTIFICATE-----' "$2" 2>/dev/null; then
    echo "gen-secrets: $1=$2: no PEM certificate in it" >&2
    exit 1
  fi
  if command -v openssl >/dev/null 2>&1 && ! openssl x509 -noout -in "$2" 2>/dev/null; then
    echo "gen-secrets: $1=$2: not a certificate openssl can read" >&2
    exit 1
  fi
}
check_ca KAFKA_CA "$KAFKA_CA"
check_ca REDIS_CA "$REDIS_CA"
check_ca POSTGRES_CA "$POSTGRES_CA"

mkdir -p "$out/ca" "$out/db-passwords"
cp "$KAFKA_CA" "$out/ca/kafka.pem"
cp "$REDIS_CA" "$out/ca/redis.pem"
cp "$POSTGRES_CA" "$out/ca/postgres.pem"

jwt="$(rand_hex 32)"
kafka_pw="$(rand_hex 24)"
redis_pw="$(rand_hex 24)"
owner_pw="$(rand_hex 24)"
for role in gateway fanout projector analyst; do
  rand_hex 24 >"$out/db-passwords/$role"
done
pw() { tr -d '\n' <"$out/db-passwords/$1"; }

ca_dir=/etc/parley/ca # where the Deployments mount parley-ca
pg_url() { # user password
  printf 'postgres://%s:%s@%s:%s/%s?sslmode=verify-full&sslrootcert=%s/postgres.pem' "$1" "$2" "$PG_HOST" "$PG_PORT" "$PG_DB" "$ca_dir"
}
echo "CHAT_JWT_SECRET=$jwt" >"$out/jwt.env"
echo "CHAT_KAFKA_SASL_PASSWORD=$kafka_pw" >"$out/kafka.env"
echo "CHAT_REDIS_URL=rediss://$REDIS_USER:$redis_pw@$REDIS_ADDR/0?tls_ca=$ca_dir/redis.pem" >"$out/redis.env"
echo "CHAT_DATABASE_URL=$(pg_url "$PG_OWNER" "$owner_pw")" >"$out/db-owner.env"
for role in gateway fanout projector; do
  echo "CHAT_DATABASE_URL=$(pg_url "${ROLE_PREFIX}_$role" "$(pw "$role")")" >"$out/db-$role.env"
done

cat >"$out/STORES.txt" <<EOF
What the stores need before \`kubectl apply -k deploy/k8s\` (generated $(date -u +%Y-%m-%dT%H:%M:%SZ)).
These are live passwords: keep this file secret, and delete it once the stores have them.

== Kafka: listeners SASL_SSL on :9093 with SCRAM-SHA-512, certificates signed by the CA given ==
As a Kafka admin, create the SCRAM user:
  kafka-configs.sh --bootstrap-server BROKER --command-config admin.properties \\
    --alter --entity-type users --entity-name $KAFKA_USER \\
    --add-config 'SCRAM-SHA-512=[iterations=8192,password=$kafka_pw]'
With an authorizer (recommended), allow it only what Parley does:
  kafka-acls.sh --bootstrap-server BROKER --command-config admin.properties --add --allow-principal User:$KAFKA_USER \\
    --operation Read --operation Write --operation Describe --operation Create --topic chat.events
  kafka-acls.sh --bootstrap-server BROKER --command-config admin.properties --add --allow-principal User:$KAFKA_USER \\
    --operation Read --operation Describe --group parley. --resource-pattern-type prefixed

== Redis: TLS (tls-port 6379, port 0), certificate for ${REDIS_ADDR%%:*} signed by the CA given ==
In its ACL file (aclfile), or with ACL SETUSER then ACL SAVE:
  user default off
  user $REDIS_USER on >$redis_pw $ACL_RULES

== Postgres: ssl = on, certificate for $PG_HOST signed by the CA given ==
As a superuser:
  CREATE ROLE $PG_OWNER LOGIN CREATEROLE PASSWORD '$owner_pw';
  CREATE DATABASE $PG_DB OWNER $PG_OWNER TEMPLATE template0 LC_COLLATE 'C';
pg_hba.conf: TLS and SCRAM only, for Parley's roles (and your analysts'):
  hostssl $PG_DB $PG_OWNER,${ROLE_PREFIX}_gateway,${ROLE_PREFIX}_fanout,${ROLE_PREFIX}_projector,${ROLE_PREFIX}_analyst POD_CIDR scram-sha-256
The Job parley-migrate then creates ${ROLE_PREFIX}_read, _write, _analytics and the login roles
${ROLE_PREFIX}_gateway, _fanout, _projector, _analyst (chatctl roles); the analyst's password is
in $out/db-passwords/analyst.
EOF

echo "gen-secrets: wrote $out (Secrets, CA bundle) and $out/STORES.txt (what the stores need)"
echo "next: set up the stores as STORES.txt says, then: kubectl apply -k $(dirname "$out")"
