"""PostgreSQL: connections and pools, errors mapped from SQLSTATE, the embedded server, the catalog
and value converters, the table gateway, COPY import/export, the generic unit of work, and psql on the profile.
"""
