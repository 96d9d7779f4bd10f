"""The MongoDB consistency settings (write/read concern, read preference, retries, transactions):
their accepted values, checked at load so that a typo exits 3 naming the key instead of failing
at the first MongoDB command (or, for a read preference, silently reading from the wrong member).
"""

from __future__ import annotations

from typing import Any

from dbcli.config.model import MongoConfig
from dbcli.config.typed import Where, suggest
from dbcli.errors import ConfigError

READ_PREFERENCES = ("primary", "primaryPreferred", "secondary", "secondaryPreferred", "nearest")
READ_CONCERNS = ("local", "available", "majority", "linearizable", "snapshot")
TRANSACTIONS = ("auto", "off")


def check_mongo_topology(mongo: MongoConfig, where: Where) -> None:
    """Raise a ConfigError (exit 3) for the first setting MongoDB would refuse or misread."""
    wc = mongo.write_concern
    if wc is not None and write_concern_value(wc) is None:
        raise ConfigError(f"{where('mongo.write_concern')}: must be 'majority' or a number of members (0 or more), "
                          f"got {wc!r}", hint=_tag_hint(wc))
    for key, value, choices in (("read_preference", mongo.read_preference, READ_PREFERENCES),
                                ("read_concern", mongo.read_concern, READ_CONCERNS),
                                ("transactions", mongo.transactions, TRANSACTIONS)):
        if value is not None and value not in choices:
            raise ConfigError(f"{where('mongo.' + key)}: must be one of {', '.join(choices)}, got {value!r}",
                              hint=suggest(value, choices))


def write_concern_value(wc: str | int | None) -> str | int | None:
    """The ``w`` to give the driver: an int for a number (also written as a string), or 'majority'."""
    if isinstance(wc, bool):
        return None
    if isinstance(wc, int):
        return wc if wc >= 0 else None
    if isinstance(wc, str):
        if wc.isdigit():
            return int(wc)
        return "majority" if wc == "majority" else None
    return None


def driver_options(mongo: MongoConfig) -> dict[str, Any]:
    """pymongo's keyword options for the settings that differ from the driver's defaults."""
    options: dict[str, Any] = {}
    if mongo.write_concern is not None:
        options["w"] = write_concern_value(mongo.write_concern)
    if mongo.read_preference:
        options["readPreference"] = mongo.read_preference
    if mongo.read_concern:
        options["readConcernLevel"] = mongo.read_concern
    if not mongo.retry_writes:
        options["retryWrites"] = False
    if not mongo.retry_reads:
        options["retryReads"] = False
    return options


def _tag_hint(wc: Any) -> str | None:
    if isinstance(wc, str) and wc.lower() == "majority":
        return "did you mean 'majority'?"
    if isinstance(wc, str) and wc and not wc.lstrip("-").isdigit():
        return "a custom write concern (a replica set tag set) goes into mongo.uri as w=<name>"
    return None
