"""Client-side shaping of MongoDB report rows: ``_id`` into columns, flattening, and the ``post`` steps
(rollup, ratio, sort, limit, funnel) for what an aggregation cannot do on every MongoDB-wire server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from dbcli.errors import ConfigError

STEPS = ("rollup", "ratio", "sort", "limit", "funnel")

Rows = Iterable[dict[str, Any]]


def shape(docs: Iterable[Mapping[str, Any]], id_field: str | None, flatten: bool) -> Iterator[dict[str, Any]]:
    """``_id`` of a group (a document) becomes columns; a scalar ``_id`` takes the name in ``id``."""
    for doc in docs:
        row = dict(doc)
        if "_id" in row:
            ident = row.pop("_id")
            row = {**ident, **row} if isinstance(ident, dict) else {id_field or "_id": ident, **row}
        yield _flatten(row) if flatten else row


def _flatten(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _sort_key(v: Any) -> tuple[int, Any]:
    # None first, then numbers, then text: a total order over what reports return
    if v is None:
        return (0, 0)
    if isinstance(v, bool):
        return (1, int(v))
    if isinstance(v, int | float | Decimal):
        return (1, v)
    return (2, str(v))


def _by(column: str) -> Callable[[Mapping[str, Any]], tuple[int, Any]]:
    return lambda row: _sort_key(row.get(column))


def apply(step: Mapping[str, Any], rows: Rows) -> Rows:
    """One ``post`` step (a one-key mapping, parameters already substituted) over the rows so far."""
    (kind, spec), = step.items()
    if kind == "rollup":
        return _rollup(rows, spec)
    if kind == "ratio":
        return ({**r, **{name: _ratio(r.get(num), r.get(den)) for name, (num, den) in spec.items()}}
                for r in rows)
    if kind == "sort":
        out = list(rows)
        for col, direction in reversed([tuple(s) for s in spec]):
            out.sort(key=_by(col), reverse=str(direction).lower() == "desc")
        return out
    if kind == "limit":
        return list(rows)[:int(spec)]
    if kind == "funnel":
        return funnel(rows, [str(s) for s in spec["steps"]])
    raise ConfigError(f"unknown post step {kind!r}")


def _ratio(num: Any, den: Any) -> float | None:
    if num is None or not den:
        return None
    return round(float(num) / float(den), 2)


def _rollup(rows: Rows, spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Group rows by ``by``: ``count`` rows per group, ``sum`` columns (what $group cannot do on FerretDB)."""
    by = list(spec["by"])
    count = spec.get("count")
    sums: Mapping[str, str] = spec.get("sum") or {}
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        key = tuple(r.get(c) for c in by)
        acc = groups.get(key)
        if acc is None:
            acc = groups[key] = {**dict(zip(by, key, strict=True)), **({count: 0} if count else {}),
                                 **{out: 0 for out in sums}}
        if count:
            acc[count] += 1
        for out, col in sums.items():
            acc[out] += r.get(col) or 0
    return [groups[k] for k in sorted(groups, key=lambda k: tuple(_sort_key(v) for v in k))]


def funnel(rows: Rows, steps: list[str]) -> list[dict[str, Any]]:
    """Rows sorted by user then time: a user reaches step k+1 with an event of that type after step k."""
    reached = [0] * len(steps)
    current_user: Any = object()
    level = 0

    def close(level: int) -> None:
        for i in range(level):
            reached[i] += 1

    for r in rows:
        if r.get("user_id") != current_user:
            close(level)
            current_user, level = r.get("user_id"), 0
        if level < len(steps) and r.get("type") == steps[level]:
            level += 1
    close(level)
    first = reached[0] if reached else 0
    return [{"step": i + 1, "type": t, "users": n, "conversion": round(n / first, 4) if first else None}
            for i, (t, n) in enumerate(zip(steps, reached, strict=True))]
