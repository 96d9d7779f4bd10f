"""The repository as a prefix in an S3 bucket (``backup.dir: s3://bucket/prefix``).

Layout, under the prefix::

    .lock                         the lock object (s3_lock): owner, pid, host, expiry
    <id>/postgres/<db>.dump       the same files as in a local backup directory...
    <id>/mongo/<db>/<coll>.bson.gz
    <id>/manifest.json            ...and the manifest, written last: it is what makes <id> a backup
    <id>/verify.json              the last verification

Objects cannot be renamed, so a backup is written in place and exists once its manifest does: a
prefix ``<id>/`` without ``manifest.json`` is a run that did not finish (or a backup being pruned,
whose manifest goes first); ``backup list`` does not show it, and the next ``create`` or ``prune``
deletes it and aborts the multipart uploads left under the prefix.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import defaultdict
from contextlib import AbstractContextManager, suppress
from functools import partial
from typing import Any

from dbcli.backup import stages
from dbcli.backup import store as backup_store
from dbcli.backup.repo import Repository, Staging
from dbcli.backup.s3_client import S3Location, connect, translated
from dbcli.backup.s3_io import (
    LIST_WORKERS,
    MultipartSink,
    S3Files,
    abort_uploads,
    delete_objects,
    get_bytes,
    list_children,
    list_objects,
)
from dbcli.backup.s3_lock import s3_locked
from dbcli.backup.store import MANIFEST, VERIFY, BackupInfo, Clock
from dbcli.backup.threads import for_each
from dbcli.config.model import S3Config
from dbcli.errors import LockedError


def _in_a_backup(rel: str) -> bool:
    """Whether ``rel`` (a key under the prefix) is a file of a backup here, not of a repository nested in it."""
    head, _, rest = rel.partition("/")
    return bool(rest) and backup_store.id_time(head) is not None


class S3Staging(Staging):
    """A backup being written under ``<prefix>/<id>/``; every file is hashed as it is uploaded."""

    def __init__(self, repo: S3Repository, backup_id: str) -> None:
        self.repo, self.id = repo, backup_id
        self.location = S3Location(repo.location_.bucket, repo.location_.key(backup_id))
        self.files: S3Files = S3Files(repo.client, self.location)
        self.sinks: dict[str, MultipartSink] = {}

    @property
    def local_dir(self) -> None:
        return None

    def create(self, rel: str) -> MultipartSink:
        sink = MultipartSink(self.repo.client, self.location.bucket, self.location.key(rel))
        self.sinks[rel] = sink
        self.files.forget()
        return sink

    def file_list(self, known: dict[str, str]) -> dict[str, dict[str, Any]]:
        return {rel: {"size": sink.written, "sha256": sink.hash.hexdigest()}
                for rel, sink in sorted(self.sinks.items())}

    def commit(self, manifest: dict[str, Any]) -> str:
        # the stage as in a directory: every file is in place, the backup does not exist yet
        stages.reached("manifest")
        if self.repo.lock_lost.is_set():  # another run may have cleaned these files as leftovers meanwhile
            raise LockedError(f"{self.location.url}: this run lost the repository's lock to another run "
                              "(it stalled past the lock's expiry); the backup is not recorded",
                              hint="run it again")
        self._put_manifest(manifest)
        return self.location.url

    def fail(self, manifest: dict[str, Any]) -> None:
        # the first error is the one reported; the next run cleans whatever is left
        with suppress(Exception):
            self._drop_data()
            if not self.repo.lock_lost.is_set():  # without the lock, write nothing another run would list
                self._put_manifest(manifest)

    def discard(self) -> None:
        with suppress(Exception):
            self._drop_data()

    def _drop_data(self) -> None:
        for sink in self.sinks.values():
            sink.abort()
        keys = [key for key, _size in list_objects(self.repo.client, self.location)]
        delete_objects(self.repo.client, self.location, keys)

    def _put_manifest(self, manifest: dict[str, Any]) -> None:
        body = {**manifest, "checksum": backup_store.manifest_checksum(manifest)}
        with translated(self.location.url, writing=True):
            self.repo.client.put_object(Bucket=self.location.bucket, Key=self.location.key(MANIFEST),
                                        Body=(json.dumps(body, indent=2, ensure_ascii=False) + "\n").encode(),
                                        ContentType="application/json")


class S3Repository(Repository):
    def __init__(self, url: str, cfg: S3Config) -> None:
        self.location_ = S3Location.parse(url)
        self.client = connect(cfg)
        self.lock_lost = threading.Event()  # set by the lock's refresher: see s3_locked

    @property
    def location(self) -> str:
        return self.location_.url

    def locked(self, what: str, clock: Clock) -> AbstractContextManager[None]:
        return s3_locked(self.client, self.location_, what, clock, self.lock_lost)

    def clean_leftovers(self) -> list[str]:
        """Delete every ``<id>/`` without a manifest, and abort the unfinished multipart uploads."""
        start = len(self.location_.prefix) + 1 if self.location_.prefix else 0
        by_backup: dict[str, list[str]] = defaultdict(list)
        for key, _size in list_objects(self.client, self.location_):
            if _in_a_backup(key[start:]):
                by_backup[key[start:].partition("/")[0]].append(key)
        removed = []
        for name, keys in sorted(by_backup.items()):
            if self.location_.key(name, MANIFEST) not in keys:
                delete_objects(self.client, self.location_, keys)
                removed.append(name)
        aborted = {key[start:].partition("/")[0] for key in abort_uploads(self.client, self.location_, _in_a_backup)}
        return sorted(set(removed) | aborted)

    def list_backups(self) -> list[BackupInfo]:
        names = [name for name in list_children(self.client, self.location_) if backup_store.id_time(name) is not None]
        found: dict[str, BackupInfo] = {}

        def read(name: str, _stop: threading.Event) -> None:
            raw = get_bytes(self.client, self.location_, self.location_.key(name, MANIFEST))
            if raw is not None:  # else not finished, or being pruned: not a backup
                found[name] = backup_store.backup_info(name, None, partial(backup_store.parse_manifest, raw, None),
                                                       self._verification(name))

        # two GETs per backup, backups side by side: a repository of 100 backups lists in ~1/8 the time
        for_each(names, read, threads=LIST_WORKERS)
        return backup_store.sorted_backups(list(found.values()))

    def _verification(self, name: str) -> dict[str, Any] | None:
        raw = get_bytes(self.client, self.location_, self.location_.key(name, VERIFY))
        try:
            data = json.loads(raw.decode()) if raw is not None else None
        except (ValueError, UnicodeDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def find_backup(self, backup_id: str | None, *, latest: bool = False, kind: str | None = None) -> BackupInfo:
        return backup_store.pick_backup(self.list_backups(), backup_id, latest=latest, where=self.location,
                                        incomplete=self._present, kind=kind)

    def _present(self, name: str) -> bool:
        return any(True for _ in list_objects(self.client, S3Location(self.location_.bucket,
                                                                       self.location_.key(name))))

    def new_id(self, profile: str, tag: str | None, when: dt.datetime) -> str:
        taken = set(list_children(self.client, self.location_))
        return backup_store.new_id(profile, tag, when, taken.__contains__)

    def begin(self, backup_id: str) -> S3Staging:
        return S3Staging(self, backup_id)

    def files(self, info: BackupInfo) -> S3Files:
        return S3Files(self.client, S3Location(self.location_.bucket, self.location_.key(info.id)))

    def write_verification(self, info: BackupInfo, record: dict[str, Any]) -> None:
        with translated(self.location, writing=True):
            self.client.put_object(Bucket=self.location_.bucket, Key=self.location_.key(info.id, VERIFY),
                                   Body=(json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode(),
                                   ContentType="application/json")

    def remove(self, info: BackupInfo) -> None:
        where = S3Location(self.location_.bucket, self.location_.key(info.id))
        manifest = where.key(MANIFEST)
        delete_objects(self.client, where, [manifest])  # first: what is left is a leftover, not a backup
        delete_objects(self.client, where, [key for key, _size in list_objects(self.client, where)])

