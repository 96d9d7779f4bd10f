"""``backup verify`` of a physical backup: pg_verifybackup against its own manifest and, with
``--restore-test``, a restore of it (its chain combined) to the end of the backup in a scratch
directory beside the repository, started, queried and removed."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from dbcli.backup.physical import base, base_crypto, fetch_s3, instance, location, recover, tools
from dbcli.backup.physical import chain as physical_chain
from dbcli.backup.physical.location import Root
from dbcli.backup.repo_s3 import S3Repository
from dbcli.backup.scratch import Scratch
from dbcli.backup.stages import Progress
from dbcli.backup.store import BackupInfo
from dbcli.config.model import Config
from dbcli.errors import CheckFailedError, ConfigError, DbcliError, NotFoundError, UnreachableError

Add = Callable[[str, str, bool, str], None]
Skip = Callable[[str, str, DbcliError], None]


SCRATCH = ".restore-test-"  # + the pid of the verify run + a random part


def clean_scratch(cfg: Config, root: Path, info: BackupInfo) -> None:
    """Remove the scratch directories of restore tests whose verify run was killed, stopping the
    server each left running (``kill -9`` during recovery); a running verify's stays."""
    for leftover in root.glob(f"{SCRATCH}*"):
        pid = leftover.name[len(SCRATCH):].split("-")[0]
        if not pid.isdigit() or tools.pid_alive(int(pid)):
            continue
        with contextlib.suppress(DbcliError):
            instance.stop_orphan(leftover / "data.partial",
                                 tools.server_bin(int((info.manifest or {})[base.KIND]["major"]), cfg.backup.pg_bin))
        shutil.rmtree(leftover, ignore_errors=True)


def check(cfg: Config, root: Root, info: BackupInfo, *, restore_test: bool, add: Add, skip: Skip,
          progress: Progress) -> None:
    if physical_chain.depends_on(info.manifest):
        # an incremental backup restores only with every backup before it: a missing one is damage
        try:
            ids = [b.id for b in base.chain_of(root, info)]
            add("chain", info.id, True, " <- ".join(ids))
        except NotFoundError as e:
            add("chain", info.id, False, e.message)
            return
    subject = f"{info.id}/{base.BASE}"
    progress(f"postgres: pg_verifybackup {info.id}")
    try:
        _verify_files(cfg, root, info, progress)
        add("pg_verifybackup", subject, True, "")
    except ConfigError as e:
        skip("pg_verifybackup", subject, e)
        return
    except DbcliError as e:
        add("pg_verifybackup", subject, False, e.message)
        return
    if not restore_test:
        return
    progress(f"postgres: restore test of {info.id} (to the end of the backup)")
    beside = Path(tempfile.gettempdir()) if isinstance(root, S3Repository) else root
    clean_scratch(cfg, beside, info)
    scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH}{os.getpid()}-", dir=beside))
    try:
        result = recover.restore(cfg, data_dir=scratch / "data", root=location.text(root), backup_id=info.id,
                                 immediate=True, progress=progress)
        add("restore-test", f"postgres {info.id}", True,
            f"{result['databases']} databases, recovered to {result['recovered_lsn']} in "
            f"{result['extract_s'] + result['replay_s']:.1f}s")
    except (UnreachableError, ConfigError) as e:
        skip("restore-test", f"postgres {info.id}", e)
    except (CheckFailedError, NotFoundError) as e:
        add("restore-test", f"postgres {info.id}", False, e.message)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _verify_files(cfg: Config, root: Root, info: BackupInfo, progress: Progress) -> None:
    """pg_verifybackup of ``info``'s files: downloaded first from S3, decrypted first when encrypted
    (pg_verifybackup reads plain files: a 0700 scratch copy, removed with the block)."""
    downloads = None
    with Scratch() as scratch:
        try:
            if isinstance(root, S3Repository):  # downloaded (into $TMPDIR), then removed
                downloads = Path(tempfile.mkdtemp(prefix=f"{SCRATCH}{os.getpid()}-"))
                directory = fetch_s3.download_chain(root, [info], downloads / "dl", progress)[0]
            else:
                directory = base.backup_dir(info) / base.BASE
            if base_crypto.is_sealed(directory):
                progress(f"decrypting {info.id} for pg_verifybackup")
                directory = base_crypto.plain_copy(info, directory, scratch.path() / "plain",
                                                   base_crypto.key_of(cfg, info))
            base.verify_files(cfg, directory)
        finally:
            if downloads is not None:
                shutil.rmtree(downloads, ignore_errors=True)
