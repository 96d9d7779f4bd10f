"""Cache values as bytes: tagged JSON keeps Decimal, dates, bytes, BSON... exact (never pickle, which
would run code from whoever can write to a shared Redis); large values compressed.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
import zlib
from decimal import Decimal
from typing import Any

_COMPRESS_ABOVE = 64 * 1024  # small entries are cheaper to store as they are


def encode(value: Any) -> bytes:
    raw = json.dumps(_tag(value), separators=(",", ":"), ensure_ascii=False).encode()
    if len(raw) > _COMPRESS_ABOVE:
        return b"z" + zlib.compress(raw, 1)
    return b"j" + raw


def decode(data: bytes) -> Any:
    kind, body = data[:1], data[1:]
    raw = zlib.decompress(body) if kind == b"z" else body
    return _untag(json.loads(raw))


def _tag(v: Any) -> Any:
    if v is None or isinstance(v, bool | str):
        return v
    if isinstance(v, int):
        return v if abs(v) < 2**53 else {"$t": "int", "v": str(v)}
    if isinstance(v, float):
        return v if v == v and v not in (float("inf"), float("-inf")) else {"$t": "float", "v": repr(v)}
    if isinstance(v, dict):
        if "$t" in v:
            return {"$t": "dict", "v": [[k, _tag(x)] for k, x in v.items()]}
        return {str(k): _tag(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_tag(x) for x in v]
    if isinstance(v, Decimal):
        return {"$t": "dec", "v": str(v)}
    if isinstance(v, dt.datetime):
        return {"$t": "dt", "v": v.isoformat()}
    if isinstance(v, dt.date):
        return {"$t": "date", "v": v.isoformat()}
    if isinstance(v, dt.time):
        return {"$t": "time", "v": v.isoformat()}
    if isinstance(v, dt.timedelta):
        return {"$t": "td", "v": [v.days, v.seconds, v.microseconds]}
    if isinstance(v, uuid.UUID):
        return {"$t": "uuid", "v": str(v)}
    if isinstance(v, bytes | bytearray | memoryview):
        return {"$t": "bytes", "v": base64.b64encode(bytes(v)).decode()}
    if type(v).__module__.startswith("bson"):
        json_util = _bson_json()
        return {"$t": "bson", "v": json_util.dumps(v, json_options=json_util.CANONICAL_JSON_OPTIONS)}
    return {"$t": "str", "v": str(v)}


def _untag(v: Any) -> Any:
    if isinstance(v, list):
        return [_untag(x) for x in v]
    if not isinstance(v, dict):
        return v
    tag = v.get("$t")
    if tag is None:
        return {k: _untag(x) for k, x in v.items()}
    raw = v["v"]
    if tag == "dec":
        return Decimal(raw)
    if tag == "dt":
        return dt.datetime.fromisoformat(raw)
    if tag == "date":
        return dt.date.fromisoformat(raw)
    if tag == "time":
        return dt.time.fromisoformat(raw)
    if tag == "td":
        return dt.timedelta(days=raw[0], seconds=raw[1], microseconds=raw[2])
    if tag == "uuid":
        return uuid.UUID(raw)
    if tag == "bytes":
        return base64.b64decode(raw)
    if tag == "int":
        return int(raw)
    if tag == "float":
        return float(raw)
    if tag == "dict":
        return {k: _untag(x) for k, x in raw}
    if tag == "bson":
        json_util = _bson_json()
        return json_util.loads(raw, json_options=json_util.CANONICAL_JSON_OPTIONS)
    return raw


def _bson_json() -> Any:
    # pymongo's bson costs ~20 ms to import; only results of MongoDB reports hold BSON values
    from bson import json_util

    return json_util
