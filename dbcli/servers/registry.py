"""The local servers dbcli has started on this machine: one small note each, under the data home.

The embedded PostgreSQL and the local MongoDB-wire server note each start here
(``<data home>/.servers/<server>-<hash>.json``); ``dbcli local status`` and ``local stop`` read the
notes, so a server started under another profile, another config file or another data dir is
never lost from sight. The notes say where a server's data is, nothing else: whether it still
runs is read from its data dir each time (``servers.local``), and a note whose server is gone is
removed then. Servers started by a dbcli from before the notes are found by their data dirs in
``<data home>/*/postgres`` and ``<data home>/*/mongo``.

Only the embedded modules write notes; this module imports nothing of theirs (they import it).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from dbcli.config.paths import data_home, servers_registry

# the file each kind of server leaves in its data dir while it runs
MARKERS = {"postgres": "postmaster.pid", "mongo": "dbcli-server.json"}


@dataclass(frozen=True)
class Noted:
    server: str  # "postgres" or "mongo"
    data_dir: Path


def note(server: str, data_dir: Path) -> None:
    """Note that dbcli started ``server`` on ``data_dir``. Bookkeeping: a failure to write is ignored
    (the server runs either way; ``local status`` still finds it if its data is in the data home)."""
    entry = _entry(server, data_dir)
    record = {"server": server, "data_dir": str(data_dir.absolute()), "started": time.time()}
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
    try:
        entry.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, entry)  # one file per data dir: concurrent starts write the same note
    except OSError:
        tmp.unlink(missing_ok=True)


def forget(server: str, data_dir: Path) -> None:
    with contextlib.suppress(OSError):
        _entry(server, data_dir).unlink(missing_ok=True)


def noted() -> list[Noted]:
    """Every server noted, then those found in the data home, each once (running or not: the
    caller checks)."""
    found: dict[tuple[str, Path], Noted] = {}
    for entry in sorted(servers_registry().glob("*.json")):
        try:
            record = json.loads(entry.read_text(encoding="utf-8"))
            item = Noted(str(record["server"]), Path(record["data_dir"]))
        except (OSError, ValueError, KeyError, TypeError):
            entry.unlink(missing_ok=True)  # damaged, or half of an old write: nothing to keep
            continue
        if item.server in MARKERS:
            found.setdefault((item.server, canonical(item.data_dir)), item)
    for server, marker in MARKERS.items():
        for path in sorted(data_home().glob(f"*/{server}/{marker}")):
            found.setdefault((server, canonical(path.parent)), Noted(server, path.parent))
    return list(found.values())


def canonical(data_dir: Path) -> Path:
    """``data_dir`` as compared: two spellings of one directory are one server."""
    try:
        return data_dir.resolve()
    except OSError:
        return data_dir.absolute()


def _entry(server: str, data_dir: Path) -> Path:
    digest = zlib.crc32(str(canonical(data_dir)).encode("utf-8", "surrogateescape"))
    return servers_registry() / f"{server}-{digest:08x}.json"
