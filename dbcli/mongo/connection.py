"""MongoDB connections (any MongoDB-wire server: MongoDB or FerretDB) and error translation.

pymongo is imported inside the functions that use it: it costs about 125 ms to import (measured
with ``-X importtime``), and PostgreSQL-only commands (``status``, ``schema apply``, reports) import
this module without ever opening a MongoDB connection.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbcli.config.model import Config
from dbcli.config.mongo_topology import driver_options
from dbcli.config.redact import redact_text
from dbcli.errors import (
    ConfigError,
    ConflictError,
    DbcliError,
    InvalidInputError,
    UnreachableError,
)
from dbcli.mongo import embedded

if TYPE_CHECKING:
    from pymongo import MongoClient
    from pymongo.database import Database


def uri(cfg: Config) -> str:
    if cfg.mongo.embedded:
        server = embedded.ensure_running(cfg)
        return server.uri
    if not cfg.mongo.uri:
        raise ConfigError("no MongoDB is configured", hint="set mongo.uri, or mongo.embedded: true")
    return cfg.mongo.uri


def client(cfg: Config, **overrides: Any) -> MongoClient[dict[str, Any]]:
    from pymongo import MongoClient  # see the module docstring
    from pymongo.errors import ConfigurationError, InvalidURI

    m = cfg.mongo
    options: dict[str, Any] = {
        "serverSelectionTimeoutMS": milliseconds(m.connect_timeout if m.server_selection_timeout is None
                                                 else m.server_selection_timeout),
        "connectTimeoutMS": milliseconds(m.connect_timeout),
        # without it a server that stops answering mid-operation leaves pymongo waiting forever
        "socketTimeoutMS": milliseconds(m.socket_timeout) or None,
        "appname": "dbcli",
        "tz_aware": True,
    }
    if m.timeout:
        options["timeoutMS"] = milliseconds(m.timeout)
    options.update(driver_options(m))
    options.update(overrides)
    try:
        return MongoClient(uri(cfg), **options)
    except (ConfigurationError, InvalidURI, ValueError, TypeError) as e:
        raise ConfigError(f"mongo settings are invalid: {redact_text(str(e))}") from None


def milliseconds(seconds: float) -> int:
    """A timeout in seconds as pymongo's milliseconds; a fraction of a millisecond is 1, not 0."""
    return max(1, round(seconds * 1000)) if seconds else 0


def database(cfg: Config, mc: MongoClient[dict[str, Any]] | None = None) -> Database[dict[str, Any]]:
    mc = mc or client(cfg)
    return mc[cfg.mongo.database]


@contextmanager
def errors_translated() -> Iterator[None]:
    from pymongo.errors import PyMongoError  # see the module docstring

    try:
        yield
    except PyMongoError as e:
        raise translate(e) from e


def translate(e: Exception) -> DbcliError:
    from pymongo.errors import (  # see the module docstring
        AutoReconnect,
        BulkWriteError,
        ConnectionFailure,
        DuplicateKeyError,
        ExecutionTimeout,
        OperationFailure,
        ServerSelectionTimeoutError,
        WTimeoutError,
    )

    if isinstance(e, BulkWriteError):
        return _bulk_error(e)
    text = redact_text(str(e)).split(", Timeout:")[0].splitlines()[0][:300]
    if isinstance(e, ServerSelectionTimeoutError | ConnectionFailure | AutoReconnect):
        return UnreachableError(f"cannot reach MongoDB: {text}")
    if isinstance(e, ExecutionTimeout | WTimeoutError):
        return UnreachableError(f"MongoDB operation timed out: {text}")
    if isinstance(e, DuplicateKeyError):
        return ConflictError(f"duplicate key: {text}")
    if isinstance(e, OperationFailure):
        if e.code == 121:  # DocumentValidationFailure
            return InvalidInputError(f"document failed validation: {text}")
        if e.code in (2, 9, 14, 15, 17, 40, 51, 52, 53):  # BadValue, FailedToParse, TypeMismatch...
            return InvalidInputError(text)
        if e.code == 11000:
            return ConflictError(f"duplicate key: {text}")
    return DbcliError(f"MongoDB error: {text}")


@contextmanager
def session(cfg: Config) -> Iterator[Database[dict[str, Any]]]:
    """The configured database; driver errors come out as dbcli errors; the client is closed."""
    mc = client(cfg)
    try:
        with translated():
            yield mc[cfg.mongo.database]
    finally:
        mc.close()


@contextmanager
def translated(payload: Any = None) -> Iterator[None]:
    """``translate``, plus: server rejections of a query are invalid input (exit 5).

    ``payload``: what was sent, to explain a connection FerretDB drops on a Decimal128.
    """
    from pymongo.errors import AutoReconnect, OperationFailure, PyMongoError  # see the module docstring

    try:
        yield
    except PyMongoError as e:
        if isinstance(e, AutoReconnect) and payload is not None and contains_decimal128(payload):
            # FerretDB 1.x drops the connection on a Decimal128 instead of answering
            raise InvalidInputError("the server closed the connection on a Decimal128 value "
                                    "(FerretDB does not support $numberDecimal)") from None
        err = translate(e)
        if isinstance(e, OperationFailure) and e.code not in (13, 18, 8000):
            if type(err) is DbcliError:
                err = InvalidInputError(err.message)
            errmsg = (e.details or {}).get("errmsg") if isinstance(e.details, dict) else None
            if errmsg and type(err) is InvalidInputError:
                # the server's own words, without pymongo's ", full error: {...}" dump
                err = InvalidInputError(redact_text(str(errmsg)).splitlines()[0][:300].rstrip("."))
        raise err from e


def contains_decimal128(value: Any) -> bool:
    if isinstance(value, Mapping):  # dicts and RawBSONDocuments
        return any(contains_decimal128(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(contains_decimal128(v) for v in value)
    return type(value).__name__ == "Decimal128"


def _bulk_error(e: Exception) -> DbcliError:
    errors = (getattr(e, "details", None) or {}).get("writeErrors") or []
    first = errors[0] if errors else {}
    msg = redact_text(str(first.get("errmsg", "bulk write failed"))).splitlines()[0][:300]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    code = first.get("code")
    if code == 11000:
        return ConflictError(f"duplicate key: {msg}{more}")
    if code == 121:
        return InvalidInputError(f"document failed validation: {msg}{more}")
    return DbcliError(f"MongoDB bulk write failed: {msg}{more}")


# what MongoDB has allowed since 1.8, for a server whose hello does not say
DEFAULT_MAX_DOCUMENT = 16 << 20


def max_document_size(db: Database[dict[str, Any]]) -> int:
    """The server's ``maxBsonObjectSize``. FerretDB stores bigger documents than it announces, but
    pymongo and every other driver refuse them on the way back, so dbcli keeps to the announced size."""
    announced = db.command("hello").get("maxBsonObjectSize")
    return int(announced) if isinstance(announced, int) and announced > 0 else DEFAULT_MAX_DOCUMENT


def too_large(size: int, limit: int) -> str:
    """Why a document of ``size`` bytes is refused."""
    return f"the document is {size} bytes of BSON, over the server's limit of {limit} (maxBsonObjectSize)"


def server_info(mc: MongoClient[dict[str, Any]]) -> dict[str, Any]:
    """Version and flavour of the server (FerretDB reports itself in buildInfo)."""
    info = mc.admin.command("buildInfo")
    # FerretDB 1 says ferretdbVersion, FerretDB 2 {ferretdb: {version}}
    ferretdb = info.get("ferretdbVersion") or (info.get("ferretdb") or {}).get("version")
    if ferretdb:
        return {"flavour": "FerretDB", "version": str(ferretdb).lstrip("v"),
                "compatible_with": info.get("version", "?")}
    return {"flavour": "MongoDB", "version": info.get("version", "?"), "compatible_with": None}


def is_ferretdb(mc: MongoClient[dict[str, Any]]) -> bool:
    return server_info(mc)["flavour"] == "FerretDB"


def data_dir(cfg: Config) -> Path:
    return Path(cfg.mongo.data_dir)
