-- The audit ledger's roles, run once by the superuser when the database is created
-- (10-roles.sh in the compose file; by hand, or by your operator, on a managed PostgreSQL).
--
-- psql variables: database, owner_role, service_role, owner_password_file,
-- service_password_file (files holding the two roles' passwords).
--
--   owner_role    owns the schema and the ledger's tables; used only by the one-shot
--                 `python -m services.audit.entrypoints.schema --grant-to <service_role>`, which creates
--                 the tables and their append-only triggers and grants the service its share.
--   service_role  what the audit service logs in as: SELECT and INSERT on the ledger's tables,
--                 plus UPDATE of one bookkeeping column (audit_offsets.next_offset; see
--                 services/audit/adapters/schema.py), and nothing else: it cannot change or delete a
--                 recorded row, drop a trigger, or create anything.
\set ON_ERROR_STOP on
\set owner_password `cat :'owner_password_file'`
\set service_password `cat :'service_password_file'`

CREATE ROLE :"owner_role" LOGIN PASSWORD :'owner_password';
CREATE ROLE :"service_role" LOGIN PASSWORD :'service_password';

ALTER DATABASE :"database" OWNER TO :"owner_role";
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"database" TO :"service_role";

\connect :"database"
-- Nobody but the owner creates objects in the schema; the service role may only use it.
ALTER SCHEMA public OWNER TO :"owner_role";
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"service_role";
