"""PostgreSQL: connections and pools, errors mapped from SQLSTATE, the embedded server (or a local
Citus cluster, and any Citus coordinator's health), the catalog
and value converters, the table gateway, COPY import/export, the generic unit of work, the client programs
(psql, pg_dump, pg_restore: where they are, their connection), and psql on the profile.
"""
