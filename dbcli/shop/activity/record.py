"""``activity record``: one event, checked, enriched with the user's name and tier, written exactly once."""

from __future__ import annotations

import datetime as dt
from typing import Any

from dbcli.config.model import Config
from dbcli.errors import InvalidInputError, NotFoundError
from dbcli.mongo import connection as mongo
from dbcli.shop.activity.model import (
    EVENTS,
    check_event_id,
    check_type,
    check_user_id,
    derive_event_id,
    event_doc,
    parse_timestamp,
)
from dbcli.shop.activity.session import note_write, open_session, validate
from dbcli.shop.activity.users import user_refs
from dbcli.shop.activity.writer import Writer


def record(cfg: Config, user_id: Any, kind: Any, *, data: Any = None, at: Any = None,
           event_id: str | None = None) -> dict[str, Any]:
    """Record one event; returns it with ``recorded`` false when it was already there."""
    uid = check_user_id(user_id)
    kind = check_type(kind)
    if data is not None and not isinstance(data, dict):
        raise InvalidInputError("data must be a JSON object")
    ts = parse_timestamp(at if at is not None else dt.datetime.now(dt.UTC))
    eid = check_event_id(event_id) if event_id is not None else derive_event_id(uid, kind, ts, data)
    ref = user_refs(cfg, [uid]).get(uid)
    if ref is None:
        raise NotFoundError(f"user {uid} not found in PostgreSQL users")
    with open_session(cfg) as session:
        doc = event_doc(eid, uid, kind, ts, data, ref)
        validate(session, EVENTS, doc, "event")
        if session.encryptor is not None:
            doc = session.encryptor.encrypt_doc(EVENTS, doc)
        result = Writer(session).write([doc])
        if not result.inserted:
            # already there: show the stored event, not this attempt (its time is "now" by default)
            with mongo.errors_translated():
                stored = session.db[EVENTS].find_one({"event_id": eid}, {"user_id": 1, "type": 1, "timestamp": 1})
            if stored is not None:
                uid, kind, ts = stored.get("user_id"), stored.get("type"), stored.get("timestamp")
    if result.inserted:
        note_write(cfg)
    return {"event_id": eid, "user_id": uid, "type": kind, "timestamp": ts, "recorded": bool(result.inserted)}
