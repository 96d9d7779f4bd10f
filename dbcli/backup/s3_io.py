"""Objects in an S3 repository: streaming multipart uploads, streaming reads, listings, deletions.

An upload is written as it is produced (pg_dump's output, a collection's documents): parts of 8 MiB
go out on threads while the next one fills; a part waits while 32 MiB are in flight, so
memory stays flat whatever the size (a slow server slows the producer, through its pipe). Past
2,000 parts (16 GiB) parts grow to 32 MiB, one in flight, and past 8,000 (200 GiB) to 128 MiB, to
stay under S3's 10,000 parts (about 450 GiB in all).
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import IO, Any

from dbcli.backup.repo import BackupFiles
from dbcli.backup.s3_client import S3Location, error_code, translate, translated
from dbcli.errors import DbcliError, NotWritableError, WriteFailedError

# (from part, size): S3 allows 10,000 parts. 32 MiB parts keep the peak RSS near 120 MB (measured;
# 64 MiB parts took it to 180 MB); only a dump past 200 GiB needs the last size, up to 450 GiB.
PART_SIZES = ((0, 8 << 20), (2000, 32 << 20), (8000, 128 << 20))
IN_FLIGHT = 32 << 20  # bytes of parts being sent at once
READ_SIZE = 1 << 20
LIST_WORKERS = 8  # requests at once when listing backups: the client keeps 8 connections


class MultipartSink:
    """A new object written in order; ``hash`` and ``written`` describe what was sent.

    Each part goes out on a thread of its own (threads, not concurrent.futures: its import costs
    every backup command ~5 ms); the in-flight budget bounds how many run at once.
    """

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        self.where = f"s3://{bucket}/{key}"
        self.hash = hashlib.sha256()
        self.written = 0
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._threads: list[threading.Thread] = []
        self._etags: dict[int, str] = {}
        self._in_flight = 0
        self._room = threading.Condition()
        self._error: BaseException | None = None

    # -- the writer side ---------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        if self._error is not None:
            self._raise()
        self.hash.update(data)
        self._buffer += data
        self.written += len(data)
        size = self._part_size()
        while len(self._buffer) >= size:
            self._send(size)
        return len(data)

    def flush(self) -> None:
        """Nothing to do: parts go out when full, the rest at ``commit``."""

    def commit(self) -> None:
        """Send what is left and complete the object (one PUT when it never needed a part)."""
        if self._upload_id is None:
            with translated(self.where, writing=True):
                self.client.put_object(Bucket=self.bucket, Key=self.key, Body=bytes(self._buffer))
            self._buffer.clear()
            return
        if self._buffer:
            self._send(len(self._buffer))
        for thread in self._threads:
            thread.join()
        if self._error is not None:
            self.abort()
            self._raise()
        parts = [{"PartNumber": n, "ETag": etag} for n, etag in sorted(self._etags.items())]
        with translated(self.where, writing=True):
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id,
                                                  MultipartUpload={"Parts": parts})

    def abort(self) -> None:
        """Drop the upload (best effort: an upload left behind is aborted by the next run)."""
        self._error = self._error or DbcliError("upload aborted")
        with self._room:
            self._room.notify_all()
        for thread in self._threads:
            thread.join()
        if self._upload_id is not None:
            with suppress(Exception):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
            self._upload_id = None

    # -- parts -------------------------------------------------------------------------------

    def _part_size(self) -> int:
        return [size for after, size in PART_SIZES if len(self._threads) >= after][-1]

    def _send(self, size: int) -> None:
        """Send the buffer's first ``size`` bytes as the next part, once the in-flight budget has room."""
        if self._upload_id is None:
            with translated(self.where, writing=True):
                self._upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key)["UploadId"]
        with self._room:
            # one part always goes, however big: the budget bounds memory, it must not stop the upload
            while self._in_flight and self._in_flight + size > IN_FLIGHT and self._error is None:
                self._room.wait()
            if self._error is not None:
                self._raise()
            self._in_flight += size
        # the buffer itself becomes the part (only the tail past it is copied): no second copy of a
        # whole part, which for the 64 MiB parts would hold memory above 150 MB
        data, self._buffer = self._buffer, self._buffer[size:]
        del data[size:]
        thread = threading.Thread(target=self._upload_part, args=(len(self._threads) + 1, data), daemon=True,
                                  name="dbcli-s3-part")
        self._threads.append(thread)
        thread.start()

    def _upload_part(self, number: int, data: bytearray) -> None:
        try:
            with translated(self.where, writing=True):
                response = self.client.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id,
                                                   PartNumber=number, Body=data)
            self._etags[number] = response["ETag"]
        except BaseException as e:  # handed to the writer: its next write or the commit raises it
            self._error = self._error or e
        finally:
            with self._room:
                self._in_flight -= len(data)
                self._room.notify_all()

    def _raise(self) -> None:
        assert self._error is not None
        raise self._error


class _Body(io.RawIOBase):
    """A GET's streaming body as a raw binary stream (io.BufferedReader then buffers it)."""

    def __init__(self, body: Any, where: str) -> None:
        super().__init__()
        self.body, self.where = body, where

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        with translated(self.where):
            data = self.body.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            with suppress(Exception):
                self.body.close()
        super().close()


class S3Blob:
    """One object of a backup."""

    def __init__(self, files: S3Files, rel: str) -> None:
        self.files, self.rel = files, rel
        self.key = files.location.key(rel)

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1]

    @property
    def local(self) -> None:
        return None

    @contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        where = f"s3://{self.files.location.bucket}/{self.key}"
        try:
            body = self.files.client.get_object(Bucket=self.files.location.bucket, Key=self.key)["Body"]
        except Exception as e:
            if error_code(e) == "NoSuchKey":
                raise FileNotFoundError(f"{where} does not exist") from None
            raise translate(e, where) or e from None
        with io.BufferedReader(_Body(body, where), buffer_size=READ_SIZE) as stream:
            yield stream

    def size(self) -> int | None:
        return self.files.sizes().get(self.rel)


class S3Files(BackupFiles):
    """The objects under ``<prefix>/<id>/``; their sizes from one listing, taken when first asked."""

    def __init__(self, client: Any, location: S3Location) -> None:
        self.client, self.location = client, location
        self._sizes: dict[str, int] | None = None

    def blob(self, rel: str) -> S3Blob:
        return S3Blob(self, rel)

    def sizes(self) -> dict[str, int]:
        if self._sizes is None:
            start = len(self.location.prefix) + 1
            self._sizes = {key[start:]: size for key, size in list_objects(self.client, self.location)}
        return self._sizes

    def names(self) -> list[str]:
        return sorted(n for n in self.sizes() if n not in ("manifest.json", "verify.json")
                      and not n.rsplit("/", 1)[-1].startswith("."))

    def forget(self) -> None:
        """Sizes change as a backup is written: list again next time."""
        self._sizes = None


def list_objects(client: Any, location: S3Location) -> Iterator[tuple[str, int]]:
    """(key, size) of every object under the location's prefix."""
    prefix = f"{location.prefix}/" if location.prefix else ""
    with translated(location.url):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"], int(obj["Size"])


def list_children(client: Any, location: S3Location) -> list[str]:
    """The names of the "directories" right under the location's prefix."""
    prefix = f"{location.prefix}/" if location.prefix else ""
    names = []
    with translated(location.url):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=prefix,
                                                                       Delimiter="/"):
            names += [p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", [])]
    return names


def get_bytes(client: Any, location: S3Location, key: str) -> bytes | None:
    """A small object's bytes; None when it does not exist."""
    try:
        return bytes(client.get_object(Bucket=location.bucket, Key=key)["Body"].read())
    except Exception as e:
        if error_code(e) == "NoSuchKey":
            return None
        raise translate(e, location.url) or e from None


def delete_objects(client: Any, location: S3Location, keys: list[str]) -> None:
    with translated(location.url, writing=True):
        for at in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
            batch = keys[at:at + 1000]
            result = client.delete_objects(Bucket=location.bucket,
                                           Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
            errors = result.get("Errors") or []
            if errors:
                code = errors[0].get("Code")
                refused = NotWritableError if code in ("AccessDenied", "AllAccessDisabled") else WriteFailedError
                raise refused(f"{location.url}: the S3 server refused to delete {errors[0].get('Key')} ({code})")


def abort_uploads(client: Any, location: S3Location, wanted: Callable[[str], bool]) -> list[str]:
    """Abort the unfinished multipart uploads under the prefix whose key (under it) is ``wanted``; their keys.

    ``wanted`` keeps the uploads of another repository alone: ``s3://bk`` holds ``s3://bk/other``'s keys
    too, and that one's run may be uploading right now under its own lock.
    """
    prefix = f"{location.prefix}/" if location.prefix else ""
    aborted = []
    with translated(location.url, writing=True):
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=location.bucket, Prefix=prefix):
            for upload in page.get("Uploads", []):
                if not wanted(upload["Key"][len(prefix):]):
                    continue
                try:
                    client.abort_multipart_upload(Bucket=location.bucket, Key=upload["Key"],
                                                  UploadId=upload["UploadId"])
                except Exception as e:
                    if error_code(e) != "NoSuchUpload":  # finished or aborted meanwhile
                        raise
                aborted.append(upload["Key"])
    return aborted
