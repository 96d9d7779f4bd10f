"""Checks of a pg_dump custom-format archive, read by pg_restore: its table of contents holds the
data of every table the manifest lists, and (in ``backup verify``) every data block decompresses.

An encrypted archive is decrypted on the way into pg_restore's stdin; AES-GCM authenticates every
chunk, so damage shows even where pg_restore stops reading early. An archive in object storage is
downloaded on the way into pg_restore's stdin; where pg_restore stops reading early (``--list``
only needs the table of contents) the download stops too: the rest was hashed as it was uploaded.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Any

from dbcli.backup import crypto as backup_crypto
from dbcli.backup.pg_tools import restore_error
from dbcli.backup.repo import Blob
from dbcli.backup.repo_local import LocalBlob
from dbcli.child_process import die_with_parent
from dbcli.errors import CheckFailedError
from dbcli.postgres.tools import Tools

_TABLE_DATA = re.compile(r"^\d+; 0 (\d+) TABLE DATA ", re.MULTILINE)
_LARGE_OBJECTS = re.compile(r"^\d+; \d+ \d+ (BLOBS|BLOB|BLOB METADATA|LARGE OBJECTS) ", re.MULTILINE)


def list_archive(tools: Tools, path: Blob, key: bytes | None) -> str:
    """``pg_restore --list`` of the archive; CheckFailedError if unreadable."""
    code, stdout, stderr = _run_pg_restore(tools, ["--list"], path, key, capture=True)
    if code != 0:
        raise CheckFailedError(f"pg_restore --list cannot read {path.name}: {restore_error(stderr)}")
    return stdout


def check_archive(tools: Tools, source: Path | Blob, key: bytes | None, *, tables: list[dict[str, Any]],
                  full: bool = False) -> bool:
    """The archive's table of contents lists the data of every table in ``tables`` (manifest
    entries); ``full`` reads every data block too.

    Returns whether the archive holds large objects (their restore has a transaction of its own).
    """
    path = LocalBlob(source) if isinstance(source, Path) else source
    toc = list_archive(tools, path, key)
    # "2572; 0 16420 TABLE DATA public accounts postgres": a TABLE DATA entry's catalog id is its
    # table's oid, which the manifest records. pg_restore prints names in the database's encoding,
    # which need not be UTF-8; manifests written before dbcli recorded oids are matched by name
    with_data = {int(oid) for oid in _TABLE_DATA.findall(toc)}
    # partitioned parents ('p') hold no data of their own: their partitions have the TABLE DATA entries
    missing = [f"{t['schema']}.{t['table']}" for t in tables if t["kind"] == "r"
               and not (int(t["oid"]) in with_data if t.get("oid") is not None
                        else f" TABLE DATA {_listed(t['schema'])} {_listed(t['table'])} " in toc)]
    if missing:
        raise CheckFailedError(f"{path.name} has no data for table {missing[0]}"
                               + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    if full:
        # a script to /dev/null makes pg_restore decompress every data block: truncation shows
        code, _out, stderr = _run_pg_restore(tools, ["--file=/dev/null"], path, key, capture=False)
        if code != 0:
            raise CheckFailedError(f"pg_restore cannot read all of {path.name}: {restore_error(stderr)}")
    return bool(_LARGE_OBJECTS.search(toc))


def _listed(name: str) -> str:
    # pg_restore --list prints names with line breaks turned to spaces (sanitize_line)
    return name.replace("\r", " ").replace("\n", " ")


def _run_pg_restore(tools: Tools, args: list[str], path: Blob, key: bytes | None, *,
                    capture: bool) -> tuple[int, str, str]:
    """Run pg_restore on ``path`` (fed on stdin when encrypted or not local); (code, stdout, stderr)."""
    cmd = [str(tools.pg_restore), *args]
    stdout_target = subprocess.PIPE if capture else subprocess.DEVNULL
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out:
        if key is None and path.local is not None:
            proc = subprocess.Popen([*cmd, str(path.local)], stdin=subprocess.DEVNULL,
                                    stdout=out if capture else stdout_target, stderr=err, preexec_fn=die_with_parent())
            code = proc.wait()
        elif key is None:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out if capture else stdout_target,
                                    stderr=err, preexec_fn=die_with_parent())
            assert proc.stdin is not None
            try:
                with path.open() as src, suppress(BrokenPipeError):
                    while block := src.read(1 << 20):
                        proc.stdin.write(block)  # BrokenPipeError: pg_restore has read what it needs
            finally:
                with suppress(BrokenPipeError):
                    proc.stdin.close()
                code = proc.wait()
        else:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out if capture else stdout_target,
                                    stderr=err, preexec_fn=die_with_parent())
            assert proc.stdin is not None
            decrypt_error: Exception | None = None
            try:
                with path.open() as src:
                    feeding = True
                    for chunk in backup_crypto.decrypt_chunks(src, key):
                        if feeding:
                            try:
                                proc.stdin.write(chunk)
                            except BrokenPipeError:
                                # pg_restore --list stops after the TOC: authenticate the rest
                                # anyway, where that costs no download
                                feeding = False
                                if path.local is None:
                                    break
            except backup_crypto.DecryptError as e:
                decrypt_error = e
                proc.kill()
            finally:
                with suppress(BrokenPipeError):
                    proc.stdin.close()
            code = proc.wait()
            if decrypt_error is not None:
                raise CheckFailedError(f"{path.name}: {decrypt_error}")
        err.seek(0)
        out.seek(0)
        return code, out.read().decode(errors="replace"), err.read().decode(errors="replace")
