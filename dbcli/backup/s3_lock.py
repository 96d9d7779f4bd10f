"""The lock of an S3 repository: the object ``<prefix>/.lock``, holding its owner and an expiry.

Taken with a conditional PUT (``If-None-Match: *``): of two runs, the server lets one create it and
answers the other 412, which exits 75 naming the holder like the local lock. A server that ignores
the condition (an old S3-compatible one) still gets the lock object: each run then reads it back and
goes on only if it names itself, which narrows the race to the moment between two runs' writes.

The holder rewrites it every ``REFRESH`` seconds (``If-Match`` its own ETag) with a new expiry; a lock
past its expiry (by the server's clock: hosts' clocks may disagree), or written on this host by a
process that no longer runs (a run killed by SIGKILL), is stale: the next run deletes it (``If-Match``
the stale ETag, so it never deletes a newer one) and takes it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from dbcli.backup.s3_client import S3Location, error_code, translate
from dbcli.backup.store import Clock, iso, parse_iso
from dbcli.errors import LockedError

EXPIRY = dt.timedelta(minutes=10)
REFRESH = 60.0  # seconds
LOCK = ".lock"


@contextmanager
def s3_locked(client: Any, location: S3Location, what: str, clock: Clock,
              lost: threading.Event | None = None) -> Iterator[None]:
    """Hold the repository's lock object while the block runs (LockedError, exit 75, if another run has it).

    ``lost`` is set if a refresh finds the lock no longer ours (this run stalled past the expiry and
    another took it over): the caller must then not make anything it wrote a backup.
    """
    key = location.key(LOCK)
    where = f"{location.url}/{LOCK}"
    owner = os.urandom(16).hex()  # not uuid: its import costs every backup command ~2 ms
    body = {"owner": owner, "pid": os.getpid(), "host": os.uname().nodename, "command": what,
            "started_at": iso(clock())}
    etag = _take(client, location, key, where, body, clock)
    stop = threading.Event()
    state = {"etag": etag}
    refresher = threading.Thread(target=_refresh, args=(client, location, key, body, clock, stop, state,
                                                        lost or threading.Event()),
                                 daemon=True, name="dbcli-s3-lock")
    refresher.start()
    try:
        yield
    finally:
        stop.set()
        refresher.join()
        with suppress(Exception):  # an expired lock is stale anyway
            client.delete_object(Bucket=location.bucket, Key=key, IfMatch=state["etag"])


def _encoded(body: dict[str, Any], clock: Clock) -> bytes:
    return json.dumps({**body, "expires_at": iso(clock() + EXPIRY)}).encode() + b"\n"


def _take(client: Any, location: S3Location, key: str, where: str, body: dict[str, Any], clock: Clock) -> str:
    for _attempt in range(2):  # a stale lock is removed once, then taken
        try:
            client.put_object(Bucket=location.bucket, Key=key, Body=_encoded(body, clock), IfNoneMatch="*",
                              ContentType="application/json")
        except Exception as e:
            if error_code(e) not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise translate(e, location.url, writing=True) or e from None
        # read back whatever the answer: a server ignoring the condition may have let another run's
        # write land last, and a PUT whose answer was lost (a timeout, then botocore's retry) is
        # refused (412) by the very lock it made
        held = _read(client, location, key)
        if held is None:
            continue  # released meanwhile
        data, etag = held
        if data.get("owner") == body["owner"]:
            return etag
        if not _stale(data, clock):
            raise LockedError(f"another backup run holds {where} ({_holder(data)})", hint="wait for it to finish")
        try:  # only that stale version: never a lock another run has just taken
            client.delete_object(Bucket=location.bucket, Key=key, IfMatch=etag)
        except Exception as e:
            if error_code(e) not in ("PreconditionFailed", "NoSuchKey", "NotImplemented"):
                raise translate(e, location.url, writing=True) or e from None
            if error_code(e) == "NotImplemented":  # a server without conditional deletes
                client.delete_object(Bucket=location.bucket, Key=key)
    raise LockedError(f"another backup run holds {where}", hint="wait for it to finish")


def _read(client: Any, location: S3Location, key: str) -> tuple[dict[str, Any], str] | None:
    """The lock's content, with ``age`` (seconds since it was written, by the server's clock), and its ETag.

    ``age`` is coarse and errs low: Date and Last-Modified have whole seconds, and a server may send a
    Date it refreshes once a second (versitygw's, from fasthttp), later still when it is short of CPU
    (a lock just written can read ``age`` -1). Low is the safe side: a stale lock is taken a little
    later, a live one never early."""
    # botocore has imported email.utils already; a local backup command does not need it
    from email.utils import parsedate_to_datetime

    try:
        response = client.get_object(Bucket=location.bucket, Key=key)
        raw = response["Body"].read()
    except Exception as e:
        if error_code(e) == "NoSuchKey":
            return None
        raise translate(e, location.url) or e from None
    try:
        data = json.loads(raw.decode())
    except (ValueError, UnicodeDecodeError):
        data = {}
    data = data if isinstance(data, dict) else {}
    data.pop("age", None)
    with suppress(KeyError, TypeError, ValueError, AttributeError):
        now = parsedate_to_datetime(response["ResponseMetadata"]["HTTPHeaders"]["date"])
        data["age"] = (now - response["LastModified"]).total_seconds()
    return data, str(response["ETag"])


def _stale(data: dict[str, Any], clock: Clock) -> bool:
    """Past its expiry, or its process is gone. The expiry is judged by the server's clock (the lock's
    Last-Modified against the response's Date) where the server gives both: two hosts' clocks may
    differ by more than the expiry, and one far ahead must not take a lock that is being refreshed."""
    try:
        if "age" in data:
            if data["age"] > EXPIRY.total_seconds():
                return True
        elif parse_iso(str(data["expires_at"])) < clock():
            return True
        if data.get("host") == os.uname().nodename and int(data["pid"]) != os.getpid():
            os.kill(int(data["pid"]), 0)
    except ProcessLookupError:
        return True  # its process is gone (killed): nothing will refresh or release it
    except (KeyError, ValueError, TypeError, PermissionError):
        return False  # PermissionError: the process runs, as another user
    return False


def _holder(data: dict[str, Any]) -> str:
    try:
        return f"{data['command']} by pid {data['pid']} on {data['host']} since {data['started_at']}"
    except KeyError:
        return "holder unknown"


def _refresh(client: Any, location: S3Location, key: str, body: dict[str, Any], clock: Clock,
             stop: threading.Event, state: dict[str, str], lost: threading.Event) -> None:
    while not stop.wait(REFRESH):
        try:
            response = client.put_object(Bucket=location.bucket, Key=key, IfMatch=state["etag"],
                                         Body=_encoded(body, clock), ContentType="application/json")
        except Exception as e:
            if error_code(e) in ("PreconditionFailed", "NoSuchKey"):  # taken over, or removed as stale
                lost.set()
                return
            continue  # tried again next time: the expiry leaves room for several
        state["etag"] = str(response["ETag"])
