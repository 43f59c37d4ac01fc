-- The case key store's role and database, run once by the superuser (10-roles.sh in the compose
-- file; by hand, or by your operator, on a managed PostgreSQL).
--
-- psql variables: keys_database, keys_role, keys_password_file (a file holding the password).
--
-- The key store (ocsea/runtime/keystore.py) keeps each case's data key, wrapped by the master
-- key, in a table it creates itself; erasing a case replaces its key by a tombstone. So unlike
-- the ledger's service role this role owns its table and may change rows: that is what an
-- erasure is. It is a database of its own, so the ledger's roles cannot reach the keys, nor this
-- role the ledger. Back it up (a lost key is a case's personal data lost), and keep backups no
-- longer than erasures are promised within (a backup still holds a key erased after it).
\set ON_ERROR_STOP on
\set keys_password `cat :'keys_password_file'`

CREATE ROLE :"keys_role" LOGIN PASSWORD :'keys_password';
CREATE DATABASE :"keys_database" OWNER :"keys_role";
REVOKE ALL ON DATABASE :"keys_database" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"keys_database" TO :"keys_role";
