"""What kind of MongoDB deployment a client talks to, and multi-document transactions where it has them.

A standalone server (and FerretDB, which answers ``hello`` as one) has no transactions; a replica
set member (``hello`` names its ``setName``) and a ``mongos`` (``msg: 'isdbgrid'``) have them from
MongoDB 4.0 and 4.2 on (wire versions 7 and 8). pymongo is only named in type hints here: the
client passed in already loaded it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dbcli.config.model import Config
from dbcli.config.mongo_topology import write_concern_value

if TYPE_CHECKING:
    from pymongo import MongoClient
    from pymongo.client_session import ClientSession

STANDALONE, REPLICA_SET, SHARDED = "standalone", "replica set", "sharded"
# the first wire version with transactions: 4.0 on replica sets, 4.2 through mongos
TRANSACTIONS_FROM = {REPLICA_SET: 7, SHARDED: 8}


@dataclass(frozen=True)
class Topology:
    kind: str  # STANDALONE, REPLICA_SET or SHARDED
    set_name: str | None
    wire_version: int

    @property
    def has_transactions(self) -> bool:
        needed = TRANSACTIONS_FROM.get(self.kind)
        return needed is not None and self.wire_version >= needed


def from_hello(hello: dict[str, Any]) -> Topology:
    if hello.get("msg") == "isdbgrid":
        kind = SHARDED
    elif hello.get("setName"):
        kind = REPLICA_SET
    else:
        kind = STANDALONE
    return Topology(kind=kind, set_name=hello.get("setName"), wire_version=int(hello.get("maxWireVersion") or 0))


def topology(mc: MongoClient[dict[str, Any]]) -> Topology:
    return from_hello(mc.admin.command("hello"))


def uses_transactions(cfg: Config, mc: MongoClient[dict[str, Any]]) -> bool:
    """Whether a multi-document write of this profile runs in a transaction on this server."""
    if cfg.mongo.transactions == "off" or write_concern_value(cfg.mongo.write_concern) == 0:
        return False  # an unacknowledged write concern cannot commit a transaction
    return topology(mc).has_transactions


@contextmanager
def atomic(cfg: Config, mc: MongoClient[dict[str, Any]]) -> Iterator[ClientSession | None]:
    """A session in a transaction (committed on leaving, aborted on an exception) where the server
    has transactions and the profile allows them; otherwise None: each write stands on its own."""
    if not uses_transactions(cfg, mc):
        yield None
        return
    with mc.start_session() as s, s.start_transaction():
        yield s
