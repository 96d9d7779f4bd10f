"""dbcli wal archive | setup | status | receive"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dbcli.cli.options import WalNameArg, WalPathArg
from dbcli.cli.state import FormatOpt, QuietOpt, state

if TYPE_CHECKING:
    from dbcli.backup.physical.location import Root

app = typer.Typer(help="The WAL archive for point-in-time recovery (PostgreSQL).", no_args_is_help=True)

DirOpt = Annotated[str | None, typer.Option("--dir", "-d", help="Backup repository (default: backup.dir).",
                                            show_default=False)]


def _root(ctx: typer.Context, dir_: str | None) -> Root:
    """``--dir`` (a local directory: no config file is read), else the profile's repository."""
    if dir_ and "://" not in dir_:
        return Path(dir_).expanduser()
    from dbcli.backup.physical import location

    return location.open_root(state(ctx).config, dir_)


def _key(ctx: typer.Context, dir_: str | None) -> bytes | None:
    """backup.encryption_key, from the config file: not read for a local --dir without --config."""
    st = state(ctx)
    if dir_ and "://" not in dir_ and st.config_path is None:
        return None
    return st.config.backup.encryption_key


@app.command("archive")
def archive(
    ctx: typer.Context,
    path: WalPathArg,
    name: WalNameArg,
    dir_: DirOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Copy one WAL file into the repository's wal/ directory: the server's archive_command.

    Atomic and fsynced (on S3: a conditional PUT); the same file again with the same content exits
    0, different content under an archived name is refused (exit 7) and the server keeps the file
    and retries. With a local --dir no config file is read (the server runs it as its own user);
    with --dir s3://... the S3 settings come from the config file (--config). With
    backup.encryption_key in that file the file is stored encrypted (give --config with a local --dir).

    Example:
        archive_command = 'dbcli wal archive --dir /var/backups/dbcli %p %f'
    """
    from dbcli.backup.physical import location

    location.archive(_root(ctx, dir_), Path(path), name, _key(ctx, dir_))


@app.command("fetch")
def fetch(
    ctx: typer.Context,
    name: WalNameArg,
    path: WalPathArg,
    dir_: DirOpt = None,
) -> None:
    """Copy one archived WAL file out of the repository: usable as a restore_command (exit 6 if absent).

    An encrypted file is decrypted with backup.encryption_key (a local --dir reads it only with
    --config): a missing or other key exits 3, a damaged file 8.

    Example:
        restore_command = 'dbcli wal fetch --dir /var/backups/dbcli %f %p'
    """
    from dbcli.backup.physical import location

    location.fetch(_root(ctx, dir_), name, Path(path), _key(ctx, dir_))


@app.command("setup")
def setup(ctx: typer.Context, dir_: DirOpt = None, fmt: FormatOpt = None, quiet: QuietOpt = False) -> None:
    """Turn WAL archiving into the repository on (ALTER SYSTEM): wal_level, archive_mode,
    archive_command and, on PostgreSQL 17+, summarize_wal (for incremental backups).

    Needs a superuser; says when the server must restart to apply it. With backup.wal: true, backup
    create --physical does this itself (and exits 3 while a restart is pending).

    Example:
        dbcli wal setup && dbcli local stop
    """
    from dbcli.backup.physical import server

    st = state(ctx)
    out = st.output(fmt, quiet)
    result = server.setup(st.config, _root(ctx, dir_))
    out.rows(result.rows(), ["setting", "value", "changed"], title="WAL archiving")
    if result.restart_needed:
        out.info("restart the server to apply it" + (" (dbcli local stop; the next command starts it)"
                                                     if st.config.postgres.embedded else ""))


@app.command("status")
def status(ctx: typer.Context, dir_: DirOpt = None, fmt: FormatOpt = None, quiet: QuietOpt = False) -> None:
    """Show the WAL archive: segments, the first and last, gaps, and its size.

    With a Citus cluster's backups in the repository: each node's archive, the number of restore
    points and the newest one every node has archived (what backup restore --physical --latest uses).

    Example:
        dbcli wal status --format json
    """
    from dbcli.backup.physical import listing, location

    st = state(ctx)
    root = _root(ctx, dir_)
    record = listing.wal_status(root)
    if isinstance(root, Path) and (root / "cluster").is_dir():
        from dbcli.backup.physical import cluster_backup

        record.update(cluster_backup.wal_status(root))  # a Citus cluster's archives and restore points
    st.output(fmt, quiet).record(record, title=f"WAL archive in {location.text(root)}")


@app.command("receive")
def receive(ctx: typer.Context, dir_: DirOpt = None,
            slot: Annotated[str, typer.Option("--slot", help="Replication slot to use (created if missing).")]
            = "dbcli_wal") -> None:
    """Stream WAL into the repository with pg_receivewal until stopped (for a remote server).

    Into an S3 repository each completed segment is uploaded from <data dir>/wal-spool. Exits 0 when
    stopped (SIGTERM, SIGINT); 4 when the stream ends (the server went away), 3 without replication
    rights, 74 on a full disk: one line each.

    Example:
        dbcli wal receive   # as a systemd service, see docs/pitr.md
    """
    from dbcli.backup.physical import receive as wal_receive

    wal_receive.receive(state(ctx).config, _root(ctx, dir_), slot=slot)
