"""Schema management for any schema directory: PostgreSQL migrations (numbered SQL files, checksums, an
advisory lock) and MongoDB collection specs (validators, indexes).
"""
