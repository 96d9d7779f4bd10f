"""Calendar retention for backups, in the manner of restic's ``forget``.

Good backups (complete, not failed by their last verification: verified ok, never verified, or
unverified because a check could not run) are walked newest first.
``keep_last N`` keeps the N newest. ``keep_daily D`` keeps the newest backup of each of the D most
recent days that have backups; likewise weekly (ISO weeks) and monthly. Days, weeks and months are
UTC, like backup ids. A backup is kept if any rule keeps it, and the reasons are reported. The
newest good backup (verified ok or never verified; else the newest unverified one; else, when every
complete backup failed its verification, the newest complete one) is always kept: prune never
removes the last copy. Failed backups never count towards a rule and are removed; backups whose
manifest cannot be read, or names a path outside the backup, are left alone for a human to look at.

A backup that a kept incremental physical backup depends on is kept with it (chains stay whole), and
archived WAL older than the oldest physical backup's start is removed. A Citus cluster's physical
backups (``<repository>/cluster/``, local only) are planned by the same rules but on their own, each
one kept or removed with all its node backups (cluster_prune).

Unlike restic 0.16+, a rule with counts left over does not also keep the oldest backup: the rules
mean exactly what they say.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbcli.backup.physical import chain as physical_chain
from dbcli.backup.physical import cluster_prune
from dbcli.backup.repo import Repository
from dbcli.backup.repo_local import LocalRepository
from dbcli.backup.repo_open import open_repository
from dbcli.backup.store import BackupInfo, Clock, iso, utc_now
from dbcli.config.model import Config
from dbcli.errors import CheckFailedError, UsageError

RULES = ("keep_last", "keep_daily", "keep_weekly", "keep_monthly")


@dataclass
class Policy:
    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0

    @property
    def empty(self) -> bool:
        return not any((self.keep_last, self.keep_daily, self.keep_weekly, self.keep_monthly))


def policy_from(cfg: Config, overrides: dict[str, int | None]) -> Policy:
    """The flags if any is given (the others then count as 0), else ``backup.retention``."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if given:
        for rule, value in given.items():
            if value < 0:
                raise UsageError(f"--{rule.replace('_', '-')} must be a non-negative integer")
        policy = Policy(**given)
    else:  # checked when the configuration was loaded
        configured = cfg.backup.retention
        policy = Policy(**{rule: getattr(configured, rule) for rule in RULES})
    if policy.empty:
        raise UsageError("no retention policy: give --keep-last/--keep-daily/--keep-weekly/--keep-monthly "
                         "or set backup.retention")
    return policy


@dataclass
class Decision:
    backup: BackupInfo
    keep: bool
    reasons: list[str] = field(default_factory=list)

    def as_row(self) -> dict[str, Any]:
        return {"id": self.backup.id, "time": iso(self.backup.time) if self.backup.time else None,
                "status": self.backup.status, "action": "keep" if self.keep else "remove",
                "reasons": "; ".join(self.reasons)}


_BUCKETS: list[tuple[str, str, Callable[[dt.datetime], str]]] = [
    ("keep_daily", "daily", lambda t: t.strftime("%Y-%m-%d")),
    ("keep_weekly", "weekly", lambda t: f"{t.isocalendar()[0]:04d}-W{t.isocalendar()[1]:02d}"),
    ("keep_monthly", "monthly", lambda t: t.strftime("%Y-%m")),
]


def plan(backups: list[BackupInfo], policy: Policy) -> list[Decision]:
    """What to keep and remove, newest first. Pure: no clock, no file system."""
    def when(b: BackupInfo) -> dt.datetime:
        return (b.time or dt.datetime.min.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)

    decisions: list[Decision] = []
    good = sorted((b for b in backups if b.good), key=lambda b: (when(b), b.id), reverse=True)
    keeper, keeper_reason = _kept_whatever(backups, good)
    left = {rule: getattr(policy, rule) for rule, _name, _key in _BUCKETS}
    last_key: dict[str, str | None] = {rule: None for rule in left}
    for n, b in enumerate(good):
        d = Decision(b, keep=False)
        if b is keeper:
            d.reasons.append(keeper_reason)
        if n < policy.keep_last:
            d.reasons.append(f"last {policy.keep_last}")
        for rule, name, key in _BUCKETS:
            value = key(when(b))
            if left[rule] > 0 and value != last_key[rule]:
                last_key[rule] = value
                left[rule] -= 1
                d.reasons.append(f"{name} {value}")
        d.keep = bool(d.reasons)
        if not d.keep:
            d.reasons.append("not kept by any rule")
        decisions.append(d)
    for b in backups:
        if b.good:
            continue
        if b.manifest is None:
            decisions.append(Decision(b, keep=True, reasons=[f"left alone: {b.problem}"]))
        elif b.status != "ok":
            decisions.append(Decision(b, keep=False, reasons=[f"{b.status} backup"]))
        elif b is keeper:
            decisions.append(Decision(b, keep=True, reasons=[keeper_reason]))
        else:
            decisions.append(Decision(b, keep=False, reasons=["failed its last verification"]))
    # an incremental physical backup restores only with every backup of its chain
    needed = physical_chain.needed_by(backups, {d.backup.id for d in decisions if d.keep})
    for d in decisions:
        if d.backup.id in needed and not d.keep:
            d.keep, d.reasons = True, [f"needed by incremental backup {needed[d.backup.id]}"]
    decisions.sort(key=lambda d: (when(d.backup), d.backup.id), reverse=True)
    return decisions


def _kept_whatever(backups: list[BackupInfo], good: list[BackupInfo]) -> tuple[BackupInfo | None, str]:
    """The backup no rule can remove, and why; ``good`` is newest first."""
    checked = [b for b in good if b.verified in ("ok", None)]
    if checked:
        return checked[0], "newest good backup"
    if good:
        return good[0], "newest good backup (unverified)"
    complete = [b for b in backups if b.status == "ok"]
    if complete:
        newest = max(complete, key=lambda b: (b.time or dt.datetime.min.replace(tzinfo=dt.UTC), b.id))
        return newest, "newest complete backup: every complete backup failed its verification"
    return None, ""


def unsafe_error(decisions: list[Decision]) -> CheckFailedError | None:
    """Exit 8 for a prune that met a manifest naming a path outside its backup (left alone)."""
    unsafe = [d.backup for d in decisions if d.backup.unsafe]
    if not unsafe:
        return None
    more = f" (and {len(unsafe) - 1} more)" if len(unsafe) > 1 else ""
    return CheckFailedError(f"backup {unsafe[0].id} was left alone: {unsafe[0].problem}{more}",
                            hint="inspect it: its manifest has been tampered with or damaged")


def prune(cfg: Config, *, root: Path | str | None = None, overrides: dict[str, int | None] | None = None,
          dry_run: bool = False, clock: Clock = utc_now) -> list[Decision]:
    """Apply the policy to the repository (under its lock: leftovers of killed runs are removed too);
    returns the decisions. ``root``: a directory or an s3:// URL, default ``backup.dir``."""
    repo = open_repository(cfg, root)
    policy = policy_from(cfg, overrides or {})
    area = cluster_area(repo)
    if dry_run:
        return merged(plan(repo.list_backups(), policy), cluster_plan(area, policy) if area else [])
    with repo.locked("backup prune", clock):
        repo.clean_leftovers()
        decisions = plan(repo.list_backups(), policy)
        for d in decisions:
            if not d.keep:
                repo.remove(d.backup)
        physical_chain.prune_wal(repo)  # the archived WAL no physical backup left needs
        if area is None:
            return decisions
        with cluster_prune.locked(area, clock):
            clustered = cluster_plan(area, policy)
            cluster_prune.apply(area, kept=[d.backup for d in clustered if d.keep],
                                doomed=[d.backup for d in clustered if not d.keep])
    return merged(decisions, clustered)


def cluster_area(repo: Repository) -> Path | None:
    """The repository's directory when it holds Citus cluster backups."""
    return repo.root if isinstance(repo, LocalRepository) and cluster_prune.present(repo.root) else None


def cluster_plan(root: Path, policy: Policy) -> list[Decision]:
    decisions = plan(cluster_prune.backups(root), policy)
    for d in decisions:
        d.reasons.insert(0, "cluster backup")
    return decisions


def merged(decisions: list[Decision], clustered: list[Decision]) -> list[Decision]:
    def when(d: Decision) -> tuple[dt.datetime, str]:
        return (d.backup.time or dt.datetime.min.replace(tzinfo=dt.UTC)).astimezone(dt.UTC), d.backup.id

    return sorted([*decisions, *clustered], key=when, reverse=True)
