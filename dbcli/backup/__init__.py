"""Backups of both databases: the backup store and its manifest, create/verify/restore, pg_dump and
pg_restore, MongoDB dumps, encryption of backup files, and GFS retention.
"""
