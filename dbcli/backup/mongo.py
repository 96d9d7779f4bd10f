"""MongoDB backups in mongodump's directory layout, written and read natively through pymongo.

``<db>/<collection>.bson`` is the collection's documents as concatenated raw BSON (read with
RawBSONDocument, so nothing is decoded and re-encoded), ``<collection>.metadata.json`` holds its
indexes and options in canonical Extended JSON; with compression both get ``.gz`` like
``mongodump --gzip``. So ``mongorestore --gzip --dir <backup>/mongo`` reads an unencrypted backup.

There is no snapshot across collections (FerretDB has no transactions): each collection's count is
the number of documents written to its file, and the file is read back to prove it holds exactly that.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from dbcli.backup import crypto as backup_crypto
from dbcli.backup import stages
from dbcli.backup.repo import BackupFiles, Blob, Sink, Staging, open_plain
from dbcli.backup.stages import Progress
from dbcli.config.model import Config
from dbcli.errors import CheckFailedError, ConflictError, DbcliError
from dbcli.mongo import connection as mongo

if TYPE_CHECKING:
    from pymongo.database import Database

BATCH_DOCS = 1000
BATCH_BYTES = 8 << 20
MAX_DOC = 48 << 20  # BSON documents are at most 16 MiB; anything far larger is a damaged length


@dataclass
class CollectionDump:
    name: str
    documents: int
    bson_file: str  # relative to the backup directory
    metadata_file: str
    indexes: int


def file_names(collection: str, compression: int, encrypted: bool) -> tuple[str, str]:
    gz = ".gz" if compression > 0 else ""
    enc = backup_crypto.SUFFIX if encrypted else ""
    return f"{collection}.bson{gz}{enc}", f"{collection}.metadata.json{gz}{enc}"


def _safe_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\0" not in name and not name.startswith(".")


@dataclass
class _Sink:
    """A new file of the backup with optional encryption and gzip layered on top."""

    raw: Sink
    encrypted: backup_crypto.EncryptingWriter | None
    stream: Any  # the raw sink, the encrypting writer or a GzipFile: what the documents go into

    @classmethod
    def open(cls, staging: Staging, rel: str, compression: int, key: bytes | None) -> _Sink:
        raw = staging.create(rel)
        enc = backup_crypto.EncryptingWriter(raw, key) if key else None  # type: ignore[arg-type]
        base: Any = enc if enc is not None else raw
        stream = (gzip.GzipFile(filename="", mode="wb", fileobj=base, compresslevel=compression, mtime=0)
                  if compression > 0 else base)
        return cls(raw, enc, stream)

    def close(self) -> None:
        """Seal every layer and make the file whole (synced on a disk, the upload completed)."""
        try:
            if self.stream is not self.raw and self.stream is not self.encrypted:
                self.stream.close()
            if self.encrypted is not None:
                self.encrypted.close()
        except BaseException:
            self.raw.abort()
            raise
        self.raw.commit()


@contextmanager
def open_reader(path: Blob, key: bytes | None) -> Iterator[IO[bytes]]:
    """The plaintext of a dump file (decrypted, gunzipped as its name says); closes every layer."""
    with open_plain(path, key) as stream:
        if path.name.removesuffix(backup_crypto.SUFFIX).endswith(".gz"):
            with gzip.GzipFile(fileobj=stream, mode="rb") as unzipped:
                yield unzipped  # type: ignore[misc]
        else:
            yield stream


def raw_documents(stream: IO[bytes]) -> Iterator[bytes]:
    """Each document of a concatenated-BSON stream; ValueError on a damaged or truncated one."""
    while True:
        head = stream.read(4)
        if not head:
            return
        if len(head) < 4:
            raise ValueError("truncated document length")
        size = struct.unpack("<i", head)[0]
        if size < 5 or size > MAX_DOC:
            raise ValueError(f"impossible document length {size}")
        body = stream.read(size - 4)
        if len(body) < size - 4:
            raise ValueError("truncated document")
        if body[-1:] != b"\x00":
            raise ValueError("document does not end with a NUL byte")
        yield head + body


def count_file(path: Blob, key: bytes | None, *, decode: bool = False) -> int:
    """Documents in a .bson file; ``decode`` parses each one fully (verify), else walks lengths."""
    import bson  # bson (~17 ms) only when there is MongoDB work: a postgres-only backup imports this module too

    n = 0
    with open_reader(path, key) as stream:
        for raw in raw_documents(stream):
            if decode:
                bson.decode(raw)
            n += 1
    return n


def _metadata(db: Database[Any], name: str, info: Mapping[str, Any]) -> dict[str, Any]:
    indexes = [dict(ix) for ix in db[name].list_indexes()]
    uuid = info.get("info", {}).get("uuid")
    return {
        "indexes": indexes,
        "uuid": uuid.hex() if isinstance(uuid, bytes | bytearray) else "",
        "collectionName": name,
        "type": "collection",
        "options": info.get("options") or {},
    }


def dump(cfg: Config, staging: Staging, rel_dir: str, *, compression: int, key: bytes | None,
         progress: Progress) -> tuple[str, dict[str, Any], list[CollectionDump]]:
    """Dump every collection of the profile's database into ``<rel_dir>/<db>/`` of the backup being
    written; (database, server info, collections)."""
    # bson lazily, as in count_file
    from bson import json_util
    from bson.codec_options import CodecOptions
    from bson.raw_bson import RawBSONDocument

    client = mongo.client(cfg)
    try:
        with mongo.errors_translated():
            server = mongo.server_info(client)
            db = mongo.database(cfg, client)
            infos = [c for c in db.list_collections()
                     if c.get("type", "collection") == "collection" and not c["name"].startswith("system.")]
            if not infos:
                raise CheckFailedError(f"mongo database {db.name} has no collections: "
                                       "refusing to write an empty backup")
            db_dir = f"{rel_dir}/{db.name}"
            raw_opts = CodecOptions(document_class=RawBSONDocument)
            dumped: list[CollectionDump] = []
            for info in sorted(infos, key=lambda c: c["name"]):
                name = info["name"]
                if not _safe_name(name):
                    raise DbcliError(f"collection name {name!r} cannot be a file name")
                bson_name, meta_name = file_names(name, compression, key is not None)
                meta = _metadata(db, name, info)
                sink = _Sink.open(staging, f"{db_dir}/{meta_name}", compression, key)
                try:
                    sink.stream.write(json_util.dumps(meta, json_options=json_util.CANONICAL_JSON_OPTIONS).encode())
                finally:
                    sink.close()
                progress(f"mongo: dumping {db.name}.{name}")
                n = 0
                sink = _Sink.open(staging, f"{db_dir}/{bson_name}", compression, key)
                try:
                    for doc in db[name].with_options(codec_options=raw_opts).find({}, batch_size=5000):
                        sink.stream.write(doc.raw)
                        n += 1
                        if n == 1:
                            stages.reached("mongo")
                        elif n % 10000 == 0:
                            progress(f"mongo: dumping {db.name}.{name}: {n} documents")
                finally:
                    sink.close()
                # (not estimated_document_count up front: FerretDB counts by reading everything)
                if n == 0 and db[name].find_one({}, {"_id": 1}) is not None:
                    raise CheckFailedError(f"mongo collection {name}: dump is empty but the collection is not")
                # read back: a file that does not hold exactly what was sent is not a backup
                try:
                    on_disk = count_file(staging.files.blob(f"{db_dir}/{bson_name}"), key)
                except (ValueError, OSError, EOFError, gzip.BadGzipFile, backup_crypto.DecryptError) as e:
                    raise CheckFailedError(f"mongo collection {name}: written file is unreadable: {e}") from None
                if on_disk != n:
                    raise CheckFailedError(f"mongo collection {name}: file holds {on_disk} documents, "
                                           f"{n} were dumped")
                dumped.append(CollectionDump(name=name, documents=n, bson_file=f"{db_dir}/{bson_name}",
                                             metadata_file=f"{db_dir}/{meta_name}", indexes=len(meta["indexes"])))
            return db.name, server, dumped
    finally:
        client.close()


def read_metadata(path: Blob, key: bytes | None) -> dict[str, Any]:
    from bson import json_util  # lazily, as in count_file

    with open_reader(path, key) as stream:
        data = json_util.loads(stream.read().decode("utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("indexes"), list):
        raise ValueError("metadata has no index list")
    return data


def target_collections(cfg: Config, database: str | None = None) -> list[str]:
    client = mongo.client(cfg)
    try:
        with mongo.errors_translated():
            db = client[database] if database else mongo.database(cfg, client)
            return [n for n in db.list_collection_names() if not n.startswith("system.")]
    finally:
        client.close()


def restore(cfg: Config, files: BackupFiles, collections: list[dict[str, Any]], *, key: bytes | None, drop: bool,
            database: str | None = None, progress: Progress) -> str:
    """Restore the dumped collections into the profile's database (or ``database``); returns its name."""
    from bson.raw_bson import RawBSONDocument  # lazily, as in count_file

    client = mongo.client(cfg)
    try:
        with mongo.errors_translated():
            db = client[database] if database else mongo.database(cfg, client)
            existing = [n for n in db.list_collection_names() if not n.startswith("system.")]
            if existing and not drop:
                raise ConflictError(f"mongo database {db.name} is not empty ({len(existing)} collections)",
                                    hint="use --drop to replace the backed-up collections")
            for entry in collections:
                name = entry["name"]
                if drop:
                    db.drop_collection(name)
                meta = read_metadata(files.blob(entry["metadata_file"]), key)
                db.create_collection(name, **(meta.get("options") or {}))
                progress(f"mongo: restoring {db.name}.{name} ({entry['documents']} documents)")
                coll = db[name]
                batch: list[RawBSONDocument] = []
                size = 0
                with open_reader(files.blob(entry["bson_file"]), key) as stream:
                    for raw in raw_documents(stream):
                        batch.append(RawBSONDocument(raw))
                        size += len(raw)
                        if len(batch) >= BATCH_DOCS or size >= BATCH_BYTES:
                            coll.insert_many(batch, ordered=True)
                            batch, size = [], 0
                if batch:
                    coll.insert_many(batch, ordered=True)
                indexes = [{k: v for k, v in ix.items() if k not in ("v", "ns")}
                           for ix in meta["indexes"] if ix.get("name") != "_id_"]
                if indexes:
                    db.command("createIndexes", name, indexes=indexes)
            return db.name
    finally:
        client.close()


def restored_counts(cfg: Config, collections: list[dict[str, Any]],
                    database: str | None = None) -> list[dict[str, Any]]:
    client = mongo.client(cfg)
    try:
        with mongo.errors_translated():
            db = client[database] if database else mongo.database(cfg, client)
            return [{"collection": c["name"], "expected": c["documents"],
                     "actual": db[c["name"]].count_documents({})} for c in collections]
    finally:
        client.close()


def drop_database(cfg: Config, database: str) -> None:
    client = mongo.client(cfg)
    try:
        with mongo.errors_translated():
            client.drop_database(database)
    finally:
        client.close()
