"""backup prune: calendar retention on backup directories with known dates (no server needed)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from dbcli.backup import retention as backup_prune
from dbcli.backup import store as backup_store
from tests.helpers import write_config


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def fake_backup(root: Path, when: str, *, status: str = "ok", verified_ok: bool | None = None,
                unverified: bool = False) -> str:
    """A backup directory as create leaves it (manifest only: prune never reads the dumps)."""
    t = _at(when)
    backup_id = backup_store.new_id("p", None, t, root)
    path = backup_store.private_dir(root / backup_id)
    backup_store.write_manifest(path, {"format": 1, "id": backup_id, "status": status, "targets": ["postgres"],
                                       "started_at": backup_store.iso(t), "finished_at": backup_store.iso(t),
                                       "files": {}})
    if verified_ok is not None:
        backup_store.write_verification(path, {"verified_at": backup_store.iso(t), "ok": verified_ok,
                                               "restore_test": False, "problems": []})
    if unverified:
        backup_store.write_verification(path, {"verified_at": backup_store.iso(t), "state": "unverified",
                                               "ok": None, "restore_test": True, "problems": [],
                                               "unverified": ["mongo x: no MongoDB"]})
    return backup_id


def _decide(root: Path, **policy: int) -> dict[str, tuple[bool, list[str]]]:
    decisions = backup_prune.plan(backup_store.list_backups(root), backup_prune.Policy(**policy))
    return {d.backup.id: (d.keep, d.reasons) for d in decisions}


def test_keep_daily_keeps_newest_of_each_day_with_backups(tmp_path: Path) -> None:
    ids = {w: fake_backup(tmp_path, w) for w in
           ["2026-11-29T14:00", "2026-11-29T02:00", "2026-11-28T02:00", "2026-11-26T02:00", "2026-11-25T02:00"]}
    got = _decide(tmp_path, keep_daily=3)
    assert got[ids["2026-11-29T14:00"]] == (True, ["newest good backup", "daily 2026-11-29"])
    assert got[ids["2026-11-29T02:00"]] == (False, ["not kept by any rule"])
    assert got[ids["2026-11-28T02:00"]] == (True, ["daily 2026-11-28"])
    assert got[ids["2026-11-26T02:00"]] == (True, ["daily 2026-11-26"])  # the 27th had none: not counted
    assert got[ids["2026-11-25T02:00"]] == (False, ["not kept by any rule"])


def test_weekly_and_monthly_buckets(tmp_path: Path) -> None:
    ids = {w: fake_backup(tmp_path, w) for w in
           ["2026-11-09T01:00", "2026-11-08T01:00", "2026-11-02T01:00", "2026-10-31T01:00", "2026-10-15T01:00",
            "2026-09-30T01:00"]}
    got = _decide(tmp_path, keep_weekly=2, keep_monthly=2)
    assert {i: keep for i, (keep, _r) in got.items()} == {
        ids["2026-11-09T01:00"]: True, ids["2026-11-08T01:00"]: True, ids["2026-11-02T01:00"]: False,
        ids["2026-10-31T01:00"]: True, ids["2026-10-15T01:00"]: False, ids["2026-09-30T01:00"]: False}
    assert got[ids["2026-11-09T01:00"]][1] == ["newest good backup", "weekly 2026-W46", "monthly 2026-11"]
    assert got[ids["2026-11-08T01:00"]][1] == ["weekly 2026-W45"]  # Sunday ends ISO week 45
    assert got[ids["2026-10-31T01:00"]][1] == ["monthly 2026-10"]


def test_keep_last_and_rules_combine(tmp_path: Path) -> None:
    ids = [fake_backup(tmp_path, f"2026-11-{d:02d}T03:00") for d in range(1, 11)]
    got = _decide(tmp_path, keep_last=2, keep_daily=4)
    kept = [i for i in ids if got[i][0]]
    assert kept == ids[-4:]
    assert got[ids[-1]][1] == ["newest good backup", "last 2", "daily 2026-11-10"]
    assert got[ids[-3]][1] == ["daily 2026-11-08"]


def test_failed_backups_never_count_and_are_removed(tmp_path: Path) -> None:
    ok_old = fake_backup(tmp_path, "2026-11-28T02:00")
    ok = fake_backup(tmp_path, "2026-11-29T02:00")
    bad_verify = fake_backup(tmp_path, "2026-11-30T02:00", verified_ok=False)
    failed = fake_backup(tmp_path, "2026-12-01T02:00", status="failed")
    broken = tmp_path / "20261202T020000Z-p"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    got = _decide(tmp_path, keep_last=1)
    assert got[ok] == (True, ["newest good backup", "last 1"])
    assert got[ok_old] == (False, ["not kept by any rule"])
    assert got[bad_verify] == (False, ["failed its last verification"])
    assert got[failed] == (False, ["failed backup"])
    assert got[broken.name] == (True, ["left alone: manifest.json is not valid JSON"])


def test_unverified_backups_are_never_removed_for_it(tmp_path: Path) -> None:
    """An unverified backup counts like a good one; the newest verified-or-unchecked one is kept whatever
    the rules say."""
    ok = fake_backup(tmp_path, "2026-11-28T02:00", verified_ok=True)
    never = fake_backup(tmp_path, "2026-11-29T02:00")
    middle = fake_backup(tmp_path, "2026-11-30T02:00", unverified=True)
    newest = fake_backup(tmp_path, "2026-12-01T02:00", unverified=True)
    got = _decide(tmp_path, keep_last=1)
    assert got[newest] == (True, ["last 1"])
    assert got[middle] == (False, ["not kept by any rule"])
    assert got[never] == (True, ["newest good backup"])
    assert got[ok] == (False, ["not kept by any rule"])
    got = _decide(tmp_path, keep_daily=2)
    assert got[newest] == (True, ["daily 2026-12-01"]) and got[middle] == (True, ["daily 2026-11-30"])


def test_prune_never_removes_the_last_complete_backup(tmp_path: Path) -> None:
    only_unverified = fake_backup(tmp_path, "2026-11-28T02:00", unverified=True)
    assert _decide(tmp_path, keep_last=1)[only_unverified] == (True, ["newest good backup (unverified)", "last 1"])
    older = fake_backup(tmp_path / "all-failed", "2026-11-28T02:00", verified_ok=False)
    newer = fake_backup(tmp_path / "all-failed", "2026-11-29T02:00", verified_ok=False)
    failed = fake_backup(tmp_path / "all-failed", "2026-11-30T02:00", status="failed")
    got = _decide(tmp_path / "all-failed", keep_last=3)
    assert got[newer] == (True, ["newest complete backup: every complete backup failed its verification"])
    assert got[older] == (False, ["failed its last verification"])
    assert got[failed] == (False, ["failed backup"])


def test_prune_cli_dry_run_then_prune(cli: Any, tmp_path: Path) -> None:
    root = tmp_path / "backups"
    ids = [fake_backup(root, f"2026-11-{d:02d}T03:00") for d in range(20, 30)]
    (root / ".partial-20261130T030000Z-p").mkdir()  # a leftover of a killed run
    write_config(tmp_path / "dbcli.yaml", {"backup": {"dir": str(root), "retention": {"keep_last": 3}}})
    dry = cli("backup", "prune", "--dry-run", "-f", "json")
    assert dry.exit_code == 0, dry.stderr
    rows = dry.json()
    assert [r["id"] for r in rows] == ids[::-1]
    assert [r["action"] for r in rows] == ["keep"] * 3 + ["remove"] * 7
    assert rows[0]["reasons"] == "newest good backup; last 3"
    assert len(list(root.iterdir())) == 11  # nothing removed (10 backups and the leftover)

    daily = cli("backup", "prune", "--keep-daily", "5", "-f", "json")  # flags replace the config's policy
    assert daily.exit_code == 0, daily.stderr
    assert sorted(p.name for p in root.iterdir()) == [".lock", *ids[-5:]]
    assert [r["id"] for r in cli("backup", "list", "-f", "json").json()] == ids[-5:]


def test_prune_without_policy_is_usage_error(cli: Any, tmp_path: Path) -> None:
    write_config(tmp_path / "dbcli.yaml", {"backup": {"dir": str(tmp_path / "b")}})
    result = cli("backup", "prune")
    assert result.exit_code == 2
    assert result.stderr == ("Error: no retention policy: give --keep-last/--keep-daily/--keep-weekly/"
                             "--keep-monthly or set backup.retention\n")
    assert cli("backup", "prune", "--keep-last", "-1").exit_code == 2


@pytest.mark.parametrize(("age", "text"), [(5, "5s"), (600, "10m"), (7200, "2h"), (200000, "2d")])
def test_list_ages(tmp_path: Path, age: int, text: str) -> None:
    from dbcli.backup.listing import list_rows

    fake_backup(tmp_path, "2026-11-29T02:00")
    now = _at("2026-11-29T02:00") + dt.timedelta(seconds=age)
    (row,) = list_rows(tmp_path, clock=lambda: now)
    assert row["age"] == text and row["status"] == "ok" and row["verified"] == "never"
