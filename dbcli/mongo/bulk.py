"""Bulk writes a MongoDB-wire server can finish: the statement limit of FerretDB 1.x, and chunked bulks.

FerretDB 1.x holds one pool connection per update statement until the whole command ends, and an
update command with 50 statements (PostgreSQL backend; 100 on SQLite) that match documents hangs
the server for good (issue 19). Every dbcli update or delete bulk therefore goes through
``bulk_write`` here, in commands of at most ``statement_limit`` statements (1,000 elsewhere, so
that no single command of a slow server nears the socket timeout).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor, wait
from typing import Any

from pymongo.errors import BulkWriteError

from dbcli.mongo.connection import server_info

# statements per update/delete command on FerretDB 1.x: under both backends' pool sizes, with margin
FERRETDB1_STATEMENTS = 40
# elsewhere: enough to make round trips rare, few enough that one command of a slow server
# (FerretDB 2.7 takes ~15 ms a write on a collection with a compound unique index, measured)
# stays well under mongo.socket_timeout (60 s)
DEFAULT_STATEMENTS = 1000


def is_ferretdb1(mc: Any) -> bool:
    """Whether the server is FerretDB 1.x (it says so in buildInfo)."""
    info = server_info(mc)
    return info["flavour"] == "FerretDB" and str(info["version"]).split(".")[0] in ("0", "1")


def statement_limit(mc: Any) -> int:
    """Most update/delete statements dbcli puts in one command to this server."""
    return FERRETDB1_STATEMENTS if is_ferretdb1(mc) else DEFAULT_STATEMENTS


def bulk_write(coll: Any, ops: Sequence[Any], limit: int, pool: Executor | None = None) -> dict[str, Any]:
    """Unordered ``bulk_write`` in commands of at most ``limit`` statements.

    Returns the summed ``bulk_api_result`` (nMatched, nModified, nUpserted, nInserted, nRemoved).
    A BulkWriteError carries the summed result of every chunk, and write errors whose ``index``
    counts from the start of ``ops``; the chunks after a failed one are still written (unordered).
    With a ``pool``, the chunks are sent concurrently (over as many connections of the client),
    and every chunk has finished, written or failed, before this returns or raises.
    """
    total: dict[str, Any] = {"nInserted": 0, "nMatched": 0, "nModified": 0, "nUpserted": 0, "nRemoved": 0,
                             "writeErrors": [], "writeConcernErrors": [], "upserted": []}

    def send(start: int) -> dict[str, Any]:
        try:
            return dict(coll.bulk_write(list(ops[start:start + limit]), ordered=False).bulk_api_result)
        except BulkWriteError as e:
            return dict(e.details)

    starts = range(0, len(ops), max(1, limit))
    if pool is None or len(starts) < 2:
        results = [send(start) for start in starts]
    else:
        futures = [pool.submit(send, start) for start in starts]
        wait(futures)
        results = [f.result() for f in futures]
    for start, res in zip(starts, results, strict=True):
        for key in ("nInserted", "nMatched", "nModified", "nUpserted", "nRemoved"):
            total[key] += int(res.get(key, 0))
        for key in ("writeErrors", "upserted"):
            total[key] += [{**item, "index": int(item.get("index", 0)) + start} for item in res.get(key) or []]
        total["writeConcernErrors"] += res.get("writeConcernErrors") or []
    if total["writeErrors"] or total["writeConcernErrors"]:
        raise BulkWriteError(total)
    return total
