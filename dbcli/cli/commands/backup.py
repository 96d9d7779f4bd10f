"""dbcli backup create | list | verify | restore | restore-point | prune"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dbcli.cli import completion
from dbcli.cli.state import FormatOpt, QuietOpt, state

if TYPE_CHECKING:
    from dbcli.output import Output

app = typer.Typer(help="Backups for cron: create, list, verify, restore and prune.", no_args_is_help=True)

DirOpt = Annotated[str | None, typer.Option("--dir", "-d", help="Backup directory, or s3://bucket/prefix "
                   "(default: backup.dir, else <data dir>/backups).", show_default=False)]
TargetOpt = Annotated[str, typer.Option("--target", "-t", help="postgres, mongo, or all (the configured ones).")]


@contextmanager
def _progress(out: Output) -> Iterator[Callable[[str], None]]:
    """A spinner with the current step on a TTY; nothing otherwise (cron mails stay empty)."""
    if out.quiet or not out.stderr_tty:
        yield lambda _message: None
        return
    with out.err_console().status("starting") as status:
        yield lambda message: status.update(message)


def _root(dir_: str | None) -> Path | None:
    """``--dir`` as a local directory."""
    if dir_ and "://" in dir_:
        from dbcli.errors import UsageError

        raise UsageError(f"--dir {dir_}: a local directory is needed here")
    return Path(dir_).expanduser() if dir_ else None


def _repo(dir_: str | None) -> Path | str | None:
    """``--dir`` as a repository: a local directory or an s3:// URL."""
    return dir_ if dir_ and "://" in dir_ else _root(dir_)


@app.command("create")
def create(
    ctx: typer.Context,
    target: TargetOpt = "all",
    dir_: DirOpt = None,
    tag: Annotated[str | None, typer.Option("--tag", help="A word added to the backup id (e.g. nightly).",
                                            show_default=False)] = None,
    physical: Annotated[bool, typer.Option("--physical", help="PostgreSQL base backup (pg_basebackup) for "
                        "point-in-time recovery; needs replication rights (docs/pitr.md).")] = False,
    incremental: Annotated[bool, typer.Option("--incremental", help="With --physical: only what changed "
                           "since the newest physical backup (PostgreSQL 17+, summarize_wal).")] = False,
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="PostgreSQL: dump with N parallel jobs (pg_dump "
                    "directory format); encrypted or to s3://, through a scratch directory in TMPDIR.")] = 1,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Back up PostgreSQL (pg_dump) and MongoDB (mongodump layout) into one checked directory.

    With --physical: a base backup of the whole PostgreSQL server (tar, checksummed manifest checked
    by pg_verifybackup); exit 3 if the profile has no replication rights. On a local Citus cluster
    profile (backup.wal: true): a base backup of every node, then one restore point across the nodes
    (citus_create_restore_point, named after the backup); see docs/pitr.md.

    Exit 75 at once if another backup run holds the directory's lock; exit 8 if a dump is empty
    or unreadable; exit 3 if pg_dump is older than the server; exit 73 if the directory cannot be
    written (read-only, permission denied), 74 if writing fails part way (no space, ulimit -f).
    With --dir s3://bucket/prefix (or backup.dir) the dumps stream into object storage: exit 3 for
    refused credentials, 4 for an endpoint that does not answer, 73 for a refused upload.

    Example:
        dbcli -q backup create --tag nightly || mail -s "backup failed" ops@example.com
        dbcli -q backup create --physical   # a Citus cluster: every node and one restore point
    """
    from dbcli.backup import create as backup_create

    st = state(ctx)
    out = st.output(fmt, quiet)
    if physical or incremental:
        from dbcli.backup.physical import backup as physical_backup
        from dbcli.backup.physical import cluster

        if target not in ("all", "postgres"):
            from dbcli.errors import UsageError

            raise UsageError("--physical backs up PostgreSQL only")
        if cluster.is_cluster(st.config):
            from dbcli.backup.physical import cluster_backup

            if incremental:
                from dbcli.errors import UsageError

                raise UsageError("--incremental is not supported on a Citus cluster: take a full --physical backup")
            with _progress(out) as progress:
                result = cluster_backup.create(st.config, root=_repo(dir_), tag=tag, progress=progress)
            out.record(result, title="physical backup of the cluster")
            return
        with _progress(out) as progress:
            result = physical_backup.create(st.config, root=_repo(dir_), tag=tag, incremental=incremental,
                                            progress=progress)
        out.record(result, title="physical backup")
        return
    with _progress(out) as progress:
        result = backup_create.create(st.config, target=target, root=_repo(dir_), tag=tag, progress=progress,
                                      jobs=jobs)
    out.record(result, title="backup")


@app.command("list")
def list_(ctx: typer.Context, dir_: DirOpt = None, fmt: FormatOpt = None, quiet: QuietOpt = False) -> None:
    """List backups: id, time, targets, size, age, status and last verification.

    Example:
        dbcli backup list --format json
    """
    from dbcli.backup import listing
    from dbcli.backup.repo_local import LocalRepository
    from dbcli.backup.repo_open import open_repository

    st = state(ctx)
    repo = open_repository(st.config, _repo(dir_))
    rows = listing.list_rows(repo)
    if isinstance(repo, LocalRepository) and (repo.root / "cluster").is_dir():
        from dbcli.backup.physical import cluster_backup

        rows += cluster_backup.list_rows(repo.root)  # a Citus cluster's physical backups and restore points
    st.output(fmt, quiet).rows(rows, listing.LIST_COLUMNS, title=f"backups in {repo.location}")


@app.command("verify")
def verify(
    ctx: typer.Context,
    backup_id: Annotated[str | None, typer.Argument(help="Backup id (see backup list).", show_default=False,
                                                    autocompletion=completion.backups)] = None,
    latest: Annotated[bool, typer.Option("--latest", help="Verify the newest complete backup.")] = False,
    restore_test: Annotated[bool, typer.Option("--restore-test", help="Also restore into scratch databases "
                            "on the same servers, compare counts, and drop them.")] = False,
    dir_: DirOpt = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Check a backup: checksums, pg_restore can read it, every BSON file parses with the right count.

    The state is ok, failed (exit 8 naming what failed: the backup is damaged or wrong) or
    unverified (a check could not run: exit 4 for a server that does not answer, else exit 3 with
    the reason, e.g. no MongoDB configured, pg_restore too old). It is recorded for backup list.
    A Citus cluster backup: every node's backup (files, pg_verifybackup), the node list, and each
    node's archived WAL up to the backup's restore point; --restore-test restores every node to that
    point in a scratch directory beside the repository, checks the cluster and removes it.

    Example:
        dbcli -q backup verify --latest --restore-test
    """
    from dbcli.backup import verify as backup_verify

    st = state(ctx)
    out = st.output(fmt, quiet)
    if backup_id and latest:
        from dbcli.errors import UsageError

        raise UsageError("give a backup id or --latest, not both")
    with _progress(out) as progress:
        result = backup_verify.verify(st.config, root=_repo(dir_), backup_id=backup_id, latest=latest,
                               restore_test=restore_test, progress=progress)
    out.rows(result.checks, ["check", "subject", "ok", "detail"], title=f"verification of {result.id}")
    result.raise_if_failed()


@app.command("restore")
def restore(
    ctx: typer.Context,
    backup_id: Annotated[str | None, typer.Argument(help="Backup id, or 'latest' (--physical: default the "
                         "newest physical backup before the target).", show_default=False,
                         autocompletion=completion.backups)] = None,
    target: TargetOpt = "all",
    profile: Annotated[str | None, typer.Option("--profile", help="Restore into this profile's servers "
                       "(default: the current profile).", show_default=False,
                       autocompletion=completion.profiles)] = None,
    drop: Annotated[bool, typer.Option("--drop", help="Replace the backed-up tables and collections in a "
                    "non-empty target.")] = False,
    no_owner: Annotated[bool, typer.Option("--no-owner", help="PostgreSQL: do not restore ownership and "
                        "privileges (objects belong to the restoring user).")] = False,
    without_citus: Annotated[bool, typer.Option("--without-citus", help="PostgreSQL: restore a backup of a "
                             "Citus database as ordinary tables (into plain PostgreSQL).")] = False,
    physical: Annotated[bool, typer.Option("--physical", help="Point-in-time recovery of a physical backup "
                        "into a new data directory (--data-dir).")] = False,
    to_time: Annotated[str | None, typer.Option("--to-time", help="--physical: recover to this time (ISO "
                       "8601; UTC without a zone).", show_default=False)] = None,
    to_lsn: Annotated[str | None, typer.Option("--to-lsn", help="--physical: recover to this WAL position.",
                      show_default=False)] = None,
    latest: Annotated[bool, typer.Option("--latest", help="--physical: recover to the end of the archived "
                      "WAL (a Citus cluster: to its newest archived restore point).")] = False,
    to_point: Annotated[str | None, typer.Option("--to-restore-point", help="--physical, a Citus cluster: "
                        "recover every node to this restore point.", show_default=False)] = None,
    data_dir: Annotated[str | None, typer.Option("--data-dir", help="--physical: the new data directory "
                        "(absent or empty).", show_default=False)] = None,
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="PostgreSQL: pg_restore with N parallel jobs; "
                    "not in one transaction (a failed restore leaves a partial database).")] = 1,
    dir_: DirOpt = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Restore a backup, then compare row and document counts with its manifest.

    With --physical: a base backup (combined with its incremental chain) and the archived WAL into a
    new data directory, recovered to --to-time, --to-lsn or --latest, started once on a private
    socket, checked and stopped; prints the profile that runs it. A non-empty --data-dir or a
    running server there exits 3; a recovery that fails exits 8 and leaves no --data-dir.
    On a Citus cluster profile every node is restored into --data-dir/<node> and recovered to ONE
    restore point: --to-restore-point NAME (unknown: exit 6), --latest (the newest archived one) or
    --to-time TS (the newest one at or before TS: a time is not consistent across nodes); the nodes
    are started on free ports, re-linked (citus_update_node), checked and stopped.

    Refuses a non-empty target without --drop (exit 7); a count mismatch or a damaged backup exits
    8; a pg_restore older than the archive, or a server older than the backup's, exits 3.
    A backup of a Citus coordinator is distributed again as it was when the target database has the
    citus extension; into one without it, it needs --without-citus (else exit 3).

    Example:
        dbcli backup restore 20261129T101500Z-local-nightly --profile staging --drop
        dbcli backup restore --physical --to-time 2026-12-07T09:55:00Z --data-dir /srv/pg-restored
        dbcli backup restore --physical --to-restore-point before-migration --data-dir /srv/cluster-restored
    """
    from dbcli.backup import restore as backup_restore
    from dbcli.config.load import load_config
    from dbcli.errors import CheckFailedError, UsageError

    st = state(ctx)
    out = st.output(fmt, quiet)
    if physical:
        from dbcli.backup.physical import cluster, recover

        if not data_dir:
            raise UsageError("--physical needs --data-dir (a new directory for the restored server)")
        if cluster.is_cluster(st.config):
            from dbcli.backup.physical import cluster_restore

            if to_lsn:
                raise UsageError("--to-lsn is one node's position: a cluster recovers to a restore point")
            with _progress(out) as progress:
                result = cluster_restore.restore(st.config, data_dir=Path(data_dir), root=_repo(dir_),
                                                 backup_id=backup_id, to_point=to_point, to_time=to_time,
                                                 latest=latest, progress=progress)
            out.record(result, title="physical restore of the cluster")
            return
        if to_point:
            raise UsageError("--to-restore-point needs a Citus cluster profile (postgres.citus.workers)")
        with _progress(out) as progress:
            result = recover.restore(st.config, data_dir=Path(data_dir), root=_repo(dir_), backup_id=backup_id,
                                     to_time=to_time, to_lsn=to_lsn, latest=latest, progress=progress)
        out.record(result, title="physical restore")
        return
    if backup_id is None or to_time or to_lsn or latest or data_dir or to_point:
        raise UsageError("give a backup id; --to-time, --to-lsn, --latest and --data-dir need --physical")
    target_cfg = load_config(st.config_path, profile) if profile else st.config
    with _progress(out) as progress:
        rows = backup_restore.restore(st.config, target_cfg, backup_id=backup_id, root=_repo(dir_), target=target,
                              drop=drop, no_owner=no_owner, without_citus=without_citus,
                                      progress=progress, jobs=jobs)
    out.rows(rows, ["target", "name", "expected", "restored", "ok"], title=f"restored {backup_id}")
    bad = backup_restore.mismatches(rows)
    if bad:
        first = bad[0]
        undone = ("; the postgres restore was rolled back" if first.get("rolled_back")
                  else "; the postgres restore was not rolled back (--jobs)"
                  if jobs > 1 and first["target"] == "postgres" else "")
        raise CheckFailedError(f"{len(bad)} count(s) differ after restoring: {first['target']} {first['name']} "
                               f"has {first['restored']}, the backup {first['expected']}{undone}")


@app.command("restore-point")
def restore_point(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The point's name (letters, digits, _ . : -; at most 63).",
                                        show_default=False)],
    dir_: DirOpt = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Create a named restore point across every node of a Citus cluster (citus_create_restore_point).

    Recorded in the repository (backup list shows what the cluster can be restored to); the command
    then waits until every node has archived the WAL holding it. Restore it with backup restore
    --physical --to-restore-point NAME. A name used before exits 7; not a Citus cluster profile
    exits 3; WAL not archived within 60 s exits 4 (the point stays recorded).

    Example:
        dbcli -q backup restore-point "hourly-$(date -u +%Y%m%dT%H%M)"   # from cron
    """
    from dbcli.backup.physical import cluster

    st = state(ctx)
    result = cluster.restore_point(st.config, name, root=_repo(dir_))
    st.output(fmt, quiet).record(result, title="restore point")


@app.command("prune")
def prune(
    ctx: typer.Context,
    keep_last: Annotated[int | None, typer.Option("--keep-last", help="Keep the N newest backups.",
                                                  show_default=False)] = None,
    keep_daily: Annotated[int | None, typer.Option("--keep-daily", help="Keep the newest backup of each of "
                          "the last D days that have backups.", show_default=False)] = None,
    keep_weekly: Annotated[int | None, typer.Option("--keep-weekly", help="Same for the last W ISO weeks.",
                           show_default=False)] = None,
    keep_monthly: Annotated[int | None, typer.Option("--keep-monthly", help="Same for the last M months.",
                            show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Show what would be kept and removed, "
                       "and why; remove nothing.")] = False,
    dir_: DirOpt = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Remove old backups by calendar retention (restic forget style); defaults from backup.retention.

    Given any --keep-* flag, only the flags count. The newest good backup is never removed, nor a
    backup for being unverified; failed backups never count as kept. Exit 8 if a manifest names a
    path outside its backup (that backup is left alone). A Citus cluster's backups are planned on
    their own and removed whole: the manifest, every node's backup, then the WAL and restore points
    no kept one needs (docs/pitr.md).

    Example:
        dbcli backup prune --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run
    """
    from dbcli.backup import retention as backup_prune

    st = state(ctx)
    decisions = backup_prune.prune(st.config, root=_repo(dir_), dry_run=dry_run, overrides={
        "keep_last": keep_last, "keep_daily": keep_daily, "keep_weekly": keep_weekly, "keep_monthly": keep_monthly})
    st.output(fmt, quiet).rows([d.as_row() for d in decisions], ["id", "time", "status", "action", "reasons"],
                               title="prune (dry run)" if dry_run else "prune")
    unsafe = backup_prune.unsafe_error(decisions)
    if unsafe:
        raise unsafe
