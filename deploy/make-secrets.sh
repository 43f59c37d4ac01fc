#!/bin/sh
# Make the compose file's keys and passwords in deploy/secrets/ (or the directory given), each
# from the kernel's random source. Never overwrites a file that exists: a new master key would
# make every sealed case unreadable, a new matching key would forget every earlier match, and a
# new signing key would sign checkpoints auditors have not pinned. Needs openssl (the Ed25519
# signing key).
#
# The directory is 0700 and the files in it 0644: compose hands a file secret to a container as
# the file itself, with its own permissions, and each image reads it as its own unprivileged
# user (ocsea 10001, postgres, redis, grafana); the directory keeps other host users out.
#
# Not made here: principals.json, the deployment's principals (token hashes; deploy/README.md).
set -eu
dir=${1:-"$(dirname "$0")/secrets"}
mkdir -p "$dir"
chmod 700 "$dir"
umask 022

password() { od -An -vtx1 -N24 /dev/urandom | tr -d ' \n'; }

secret() {  # secret NAME COMMAND...: write COMMAND's output to NAME unless it exists
  name=$1
  shift
  if [ -e "$dir/$name" ]; then
    echo "kept    $dir/$name"
    return
  fi
  "$@" >"$dir/$name.tmp"
  mv "$dir/$name.tmp" "$dir/$name"
  echo "made    $dir/$name"
}

key32() { head -c 32 /dev/urandom; }
signing_key() {
  openssl genpkey -algorithm ed25519 -out "$dir/audit-signing.key.tmp2" 2>/dev/null
  cat "$dir/audit-signing.key.tmp2"
  rm -f "$dir/audit-signing.key.tmp2"
}

secret master.key key32
secret matching.key key32
secret audit-signing.key signing_key
# Auditors pin the public half (the console's audit page, `ocsea audit verify`).
[ -e "$dir/audit-signing.pub" ] || openssl pkey -in "$dir/audit-signing.key" -pubout -out "$dir/audit-signing.pub"

secret redis-password password
secret postgres-password password
secret audit-db-owner-password password
secret audit-db-service-password password
secret keystore-db-password password
secret grafana-admin-password password

# The services' view of the same passwords: connection URLs (read by the settings from
# /run/secrets/OCSEA_REDIS_URL, OCSEA_AUDIT_DB_URL and OCSEA_KEYSTORE_DB_URL).
redis_pw=$(cat "$dir/redis-password")
owner_pw=$(cat "$dir/audit-db-owner-password")
service_pw=$(cat "$dir/audit-db-service-password")
keys_pw=$(cat "$dir/keystore-db-password")
secret redis-auth.conf printf 'requirepass %s\n' "$redis_pw"
secret redis-url printf 'redis://:%s@redis:6379/0' "$redis_pw"
secret audit-db-owner-url printf 'postgresql+asyncpg://ocsea_owner:%s@postgres:5432/ocsea_audit' "$owner_pw"
secret audit-db-url printf 'postgresql+asyncpg://ocsea_audit:%s@postgres:5432/ocsea_audit' "$service_pw"
secret keystore-db-url printf 'postgresql+asyncpg://ocsea_keys:%s@postgres:5432/ocsea_keys' "$keys_pw"

chmod 644 "$dir"/*
[ -e "$dir/principals.json" ] || echo "missing $dir/principals.json: add the deployment's principals (deploy/README.md)"
