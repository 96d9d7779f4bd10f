"""Demo step: CRUD on a scratch collection of the configured MongoDB."""

from __future__ import annotations

import datetime as dt

from dbcli.config.model import Config
from dbcli.mongo import documents
from dbcli.mongo.connection import session
from dbcli.mongo.query import Query
from dbcli.output import Output


def step(cfg: Config, out: Output) -> None:
    """Insert, find, update and drop a document in a scratch collection of the configured MongoDB."""
    if not cfg.mongo.configured:
        out.info("no MongoDB configured: the collection step is skipped")
        return
    name = "dbcli_demo_notes"
    doc = {"title": "hello from dbcli", "tags": ["demo"], "created": dt.datetime.now(dt.UTC).replace(microsecond=0)}
    out.info(f"$ dbcli collection insert {name} --data '{{\"title\": \"hello from dbcli\", ...}}'")
    documents.insert(cfg, name, [doc])
    out.info(f"$ dbcli collection update {name} --filter '{{\"title\": \"hello from dbcli\"}}' "
             "--update '{\"$push\": {\"tags\": \"updated\"}}'")
    documents.update(cfg, name, {"title": "hello from dbcli"}, {"$push": {"tags": "updated"}})
    out.info(f"$ dbcli collection find {name}")
    out.rows(documents.find(cfg, name, Query(filter={})), extended=True)
    with session(cfg) as db:
        db.drop_collection(name)
    out.info(f"(scratch collection {name} dropped)")
