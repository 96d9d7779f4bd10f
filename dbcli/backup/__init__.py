"""Backups of both databases: the repository (a local directory or an S3 prefix: repo*, s3_*) and
the manifest, create/list/verify/restore, the PostgreSQL client tools (pg_dump, pg_restore, psql),
archive checks and what each server version accepts, MongoDB dumps, encryption of backup files, GFS
retention, and the stages a run reports to hooks.
"""
