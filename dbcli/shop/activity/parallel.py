"""Concurrent writes within one activity batch: its independent parts over several connections.

On FerretDB 2.x (DocumentDB) one command's writes run one after another in one PostgreSQL
backend, so a batch written one command at a time keeps one core busy whatever the machine has.
The parts of a batch are independent of each other (disjoint events; the counters and buckets
of different users and hours), so the writer sends them over ``WRITE_JOBS`` connections of its
client at once. Exactly-once is unchanged: the journal entry is written before any part and
removed only after every part has finished; a part that fails leaves the entry for recovery,
and no part is still running when the batch raises (``run_all`` waits for all).

On FerretDB 1.x (SQLite) concurrent writers contend for its lock and are slower: one job there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor, wait
from typing import Any, TypeVar

T = TypeVar("T")

# connections a batch is written over (FerretDB 2.7 on 2 cores, measured: 2 beat 1 by 1.3-1.7x,
# 3 and 4 were no faster than 2); the pool of pymongo's client has 100 by default
WRITE_JOBS = 2


def part_size(n: int, jobs: int, limit: int) -> int:
    """Items per part so that ``n`` items make at least ``jobs`` parts, none longer than ``limit``."""
    return max(1, min(limit, -(-n // max(1, jobs))))


def run_all(pool: Executor | None, calls: Sequence[Callable[[], T]]) -> list[T]:
    """The results of ``calls``, run concurrently on ``pool`` (in order without one).

    Every call has finished, returned or raised, before this returns or raises the first error
    (in call order): a batch never raises while one of its parts is still writing.
    """
    if pool is None or len(calls) < 2:
        return [call() for call in calls]
    futures = [pool.submit(call) for call in calls]
    wait(futures)
    return [f.result() for f in futures]


def parts(items: Sequence[Any], jobs: int, limit: int) -> list[tuple[int, Sequence[Any]]]:
    """``items`` cut into contiguous (start, part) pieces of ``part_size``."""
    size = part_size(len(items), jobs, limit)
    return [(start, items[start:start + size]) for start in range(0, len(items), size)]
