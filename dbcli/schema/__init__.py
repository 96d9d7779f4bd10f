"""Schema management for any schema directory: PostgreSQL migrations (numbered SQL files, checksums, an
advisory lock) and MongoDB collection specs (validators, indexes).

``files`` reads the directory; ``migrations`` (with ``statements`` to locate a failure) and
``mongo_collections`` apply each server's part; ``apply`` runs ``schema apply`` and ``schema status``
over both. ``diff`` finds drift of the live schema (``pg_snapshot`` reads a PostgreSQL catalog,
``scratch`` holds the database the migrations are applied to, ``mongo_diff`` compares collections);
``authoring`` writes the next migration file (``schema new``).
"""
