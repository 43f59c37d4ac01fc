#!/bin/sh
# Run once by the postgres image's entrypoint (docker-entrypoint-initdb.d) when the data
# directory is new: the ledger's owner and service roles, their passwords read from the
# compose secrets by roles.sql itself (never on a command line).
set -e
psql --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v database="$POSTGRES_DB" \
  -v owner_role=ocsea_owner \
  -v service_role=ocsea_audit \
  -v owner_password_file=/run/secrets/audit-db-owner-password \
  -v service_password_file=/run/secrets/audit-db-service-password \
  -f /etc/ocsea/roles.sql
# The case key store: a role owning a database of its own (keys.sql).
psql --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v keys_database=ocsea_keys \
  -v keys_role=ocsea_keys \
  -v keys_password_file=/run/secrets/keystore-db-password \
  -f /etc/ocsea/keys.sql
