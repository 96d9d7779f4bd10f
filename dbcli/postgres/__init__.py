"""PostgreSQL: connections and pools, errors mapped from SQLSTATE, the embedded server, the catalog,
the table gateway, COPY import/export, and the unit of work.
"""
