"""Schema management for any schema directory: PostgreSQL migrations (numbered SQL files, checksums, an
advisory lock) and MongoDB collection specs (validators, indexes).

``files`` reads the directory; ``migrations`` (with ``statements`` to locate a failure) and
``mongo_collections`` apply each server's part; ``apply`` runs ``schema apply`` and ``schema status``
over both.
"""
