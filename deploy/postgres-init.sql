-- One database per service (DESIGN.md §3: no service reads another's tables).
-- The postgres image runs this once, on an empty data volume
-- (/docker-entrypoint-initdb.d); each service's container then runs its own
-- Alembic migrations into its database at start.
CREATE DATABASE identity;
CREATE DATABASE survey;
CREATE DATABASE files;
CREATE DATABASE carte;
CREATE DATABASE notify;
