"""Physical backups of PostgreSQL and point-in-time recovery: base backups (full and incremental)
with pg_basebackup, the WAL archive in the backup repository (``dbcli wal archive`` as the server's
archive_command, or pg_receivewal), and restores into a new data directory to a time, an LSN or the
end of the archive; in a local directory or an S3 repository (location picks which); encrypted with
``backup.encryption_key`` when it is set (base_crypto, wal_crypto)."""
