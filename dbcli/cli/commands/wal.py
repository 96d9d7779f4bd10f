"""dbcli wal archive | setup | status | receive"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dbcli.cli.state import FormatOpt, QuietOpt, state

app = typer.Typer(help="The WAL archive for point-in-time recovery (PostgreSQL).", no_args_is_help=True)

DirOpt = Annotated[str | None, typer.Option("--dir", "-d", help="Backup repository (default: backup.dir).",
                                            show_default=False)]


def _root(ctx: typer.Context, dir_: str | None) -> Path:
    if dir_:
        return Path(dir_).expanduser()
    from dbcli.backup import store as backup_store

    return backup_store.root_dir(state(ctx).config)


@app.command("archive")
def archive(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="The WAL file (%p).", show_default=False)],
    name: Annotated[str, typer.Argument(help="Its name (%f).", show_default=False)],
    dir_: DirOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Copy one WAL file into the repository's wal/ directory: the server's archive_command.

    Atomic and fsynced; the same file again with the same content exits 0, different content under
    an archived name is refused (exit 7) and the server keeps the file and retries. With --dir no
    config file is read (the server runs it as its own user).

    Example:
        archive_command = 'dbcli wal archive --dir /var/backups/dbcli %p %f'
    """
    from dbcli.backup.physical import wal as wal_archive

    wal_archive.archive(_root(ctx, dir_), Path(path), name)


@app.command("fetch")
def fetch(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The WAL file's name (%f).", show_default=False)],
    path: Annotated[str, typer.Argument(help="Where to put it (%p).", show_default=False)],
    dir_: DirOpt = None,
) -> None:
    """Copy one archived WAL file out of the repository: usable as a restore_command (exit 6 if absent).

    Example:
        restore_command = 'dbcli wal fetch --dir /var/backups/dbcli %f %p'
    """
    from dbcli.backup.physical import wal as wal_archive

    wal_archive.fetch(_root(ctx, dir_), name, Path(path))


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

    Example:
        dbcli wal status --format json
    """
    from dbcli.backup.physical import listing

    st = state(ctx)
    root = _root(ctx, dir_)
    st.output(fmt, quiet).record(listing.wal_status(root), title=f"WAL archive in {root}")


@app.command("receive")
def receive(ctx: typer.Context, dir_: DirOpt = None,
            slot: Annotated[str, typer.Option("--slot", help="Replication slot to use (created if missing).")]
            = "dbcli_wal") -> None:
    """Stream WAL into the repository with pg_receivewal until stopped (for a remote server).

    Example:
        dbcli wal receive   # as a systemd service, see docs/pitr.md
    """
    from dbcli.backup.physical import receive as wal_receive

    code = wal_receive.receive(state(ctx).config, _root(ctx, dir_), slot=slot)
    if code:
        raise typer.Exit(code)
