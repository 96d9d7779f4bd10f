"""The parts a logical backup holds (``--target``): the PostgreSQL database, the MongoDB one, or all.

Its own module so that ``backup restore`` need not import ``backup create`` (and pg_dump's modules
with it) to check a name.
"""

from __future__ import annotations

from dbcli.errors import UsageError

TARGETS = ("postgres", "mongo", "all")


def check_name(target: str) -> None:
    """UsageError (exit 2) for a target that is none of TARGETS."""
    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r} (choose from {', '.join(TARGETS)})")
