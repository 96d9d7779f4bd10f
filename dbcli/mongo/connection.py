"""MongoDB connections (any MongoDB-wire server: MongoDB or FerretDB) and error translation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbcli.config.load import Config, redact_text
from dbcli.errors import (
    ConfigError,
    ConflictError,
    DbcliError,
    InvalidInputError,
    UnreachableError,
)

if TYPE_CHECKING:
    from pymongo import MongoClient
    from pymongo.database import Database


def uri(cfg: Config) -> str:
    if cfg.mongo.embedded:
        from dbcli.mongo import embedded as local_mongo

        server = local_mongo.ensure_running(cfg)
        return server.uri
    if not cfg.mongo.uri:
        raise ConfigError("no MongoDB is configured", hint="set mongo.uri, or mongo.embedded: true")
    return cfg.mongo.uri


def client(cfg: Config, **overrides: Any) -> MongoClient[dict[str, Any]]:
    from pymongo import MongoClient
    from pymongo.errors import ConfigurationError, InvalidURI

    timeout_ms = int(cfg.mongo.connect_timeout * 1000)
    options: dict[str, Any] = {
        "serverSelectionTimeoutMS": timeout_ms,
        "connectTimeoutMS": timeout_ms,
        "appname": "dbcli",
        "tz_aware": True,
    }
    if cfg.mongo.write_concern is not None:
        wc = cfg.mongo.write_concern
        options["w"] = int(wc) if isinstance(wc, str) and wc.isdigit() else wc
    if cfg.mongo.read_preference:
        options["readPreference"] = cfg.mongo.read_preference
    options.update(overrides)
    try:
        return MongoClient(uri(cfg), **options)
    except (ConfigurationError, InvalidURI, ValueError, TypeError) as e:
        raise ConfigError(f"mongo settings are invalid: {redact_text(str(e))}") from None


def database(cfg: Config, mc: MongoClient[dict[str, Any]] | None = None) -> Database[dict[str, Any]]:
    mc = mc or client(cfg)
    return mc[cfg.mongo.database]


@contextmanager
def errors_translated() -> Iterator[None]:
    from pymongo.errors import PyMongoError

    try:
        yield
    except PyMongoError as e:
        raise translate(e) from e


def translate(e: Exception) -> DbcliError:
    from pymongo.errors import (
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


def server_info(mc: MongoClient[dict[str, Any]]) -> dict[str, Any]:
    """Version and flavour of the server (FerretDB reports itself in buildInfo)."""
    info = mc.admin.command("buildInfo")
    if "ferretdbVersion" in info:
        return {"flavour": "FerretDB", "version": str(info["ferretdbVersion"]).lstrip("v"),
                "compatible_with": info.get("version", "?")}
    return {"flavour": "MongoDB", "version": info.get("version", "?"), "compatible_with": None}


def is_ferretdb(mc: MongoClient[dict[str, Any]]) -> bool:
    return server_info(mc)["flavour"] == "FerretDB"


def data_dir(cfg: Config) -> Path:
    return Path(cfg.mongo.data_dir)
