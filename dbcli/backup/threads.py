"""Work on several files of a backup at once: a few threads, the first error stops the rest.

Threads, not concurrent.futures: its import costs every backup command ~5 ms. Hashing, reading,
encrypting and uploading release the GIL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def for_each(items: list[T], work: Callable[[T, threading.Event], None], *, threads: int) -> None:
    """``work(item, stop)`` for every item, ``threads`` at a time, in order of the list. The first error
    sets ``stop`` (a long ``work`` should check it), starts no more items, and is raised here."""
    todo = list(reversed(items))
    errors: list[BaseException] = []
    stop = threading.Event()
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if stop.is_set() or not todo:
                    return
                item = todo.pop()
            try:
                work(item, stop)
            except BaseException as e:  # raised in the caller's thread below
                with lock:
                    errors.append(e)
                stop.set()

    started = [threading.Thread(target=worker, daemon=True, name="dbcli-files")
               for _ in range(min(threads, len(items)))]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()
    if errors:
        raise next((e for e in errors if not isinstance(e, InterruptedError)), errors[0])
