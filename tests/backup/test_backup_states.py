"""Verification states that tell the truth (issue 15, item 3): ok, failed (damaged or wrong), and
unverified (a check could not run), recorded, listed, and never a reason for prune to remove."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path
from typing import Any

from tests.fix_backup import MadeBackup
from tests.helpers import write_config


def _verified(cli: Any, root: Path) -> dict[str, str]:
    return {r["id"]: r["verified"] for r in cli("backup", "list", "--dir", str(root), "-f", "json").json()}


def test_a_mongo_part_under_a_profile_without_mongo_is_unverified_not_failed(cli: Any, made_backup: MadeBackup,
                                                                             tmp_path: Path) -> None:
    """It was recorded FAILED, and prune then listed it for removal ("failed its last verification")."""
    root = made_backup.copy_to(tmp_path)
    write_config(tmp_path / "dbcli.yaml", {"postgres": made_backup.settings["postgres"],
                                           "backup": {"retention": {"keep_last": 1}}})
    checked = cli("backup", "verify", made_backup.id, "--restore-test", "--dir", str(root), "-f", "json")
    assert checked.exit_code == 3, checked.stderr  # not 8: nothing was found wrong
    rows = checked.json()
    assert [c for c in rows if c["ok"] is False] == []
    (skipped,) = [c for c in rows if c["ok"] is None]
    assert skipped["check"] == "restore-test" and skipped["subject"].startswith("mongo dbcli_verify_")
    assert re.fullmatch(r"not checked: the backup has a MongoDB part and profile \S+ has no MongoDB", skipped["detail"])
    assert any(c["subject"] == "postgres public.orders" and c["ok"] for c in rows)  # the rest ran
    assert checked.stderr.startswith(f"Error: backup {made_backup.id} could not be verified: mongo dbcli_verify_")
    assert checked.stderr.endswith("(hint: verify under a profile with mongo.uri or mongo.embedded: true)\n")
    record = json.loads((root / made_backup.id / "verify.json").read_text())
    assert (record["state"], record["ok"], record["restore_test"]) == ("unverified", None, True)
    assert _verified(cli, root)[made_backup.id].startswith("unverified ")
    pruned = cli("backup", "prune", "--dry-run", "--dir", str(root), "-f", "json")
    assert [(d["action"], d["reasons"]) for d in pruned.json()] == [("keep", "newest good backup (unverified); last 1")]


def test_unreachable_servers_leave_it_unverified_with_exit_4(cli: Any, made_backup: MadeBackup,
                                                            tmp_path: Path) -> None:
    root = made_backup.copy_to(tmp_path)
    write_config(tmp_path / "dbcli.yaml", {
        "postgres": {"dsn": "host=127.0.0.1 port=1 dbname=x user=x", "connect_timeout": 2},
        "mongo": {"uri": "mongodb://127.0.0.1:1/", "database": "x", "connect_timeout": 1}})
    checked = cli("backup", "verify", made_backup.id, "--restore-test", "--dir", str(root), "-f", "json")
    assert checked.exit_code == 4, checked.stderr
    skipped = [c["subject"].split()[0] for c in checked.json() if c["ok"] is None]
    assert skipped == ["postgres", "mongo"]
    assert not [c for c in checked.json() if c["ok"] is False]
    assert checked.stderr.startswith(f"Error: backup {made_backup.id} could not be verified: postgres ")
    assert _verified(cli, root)[made_backup.id].startswith("unverified ")


def test_damage_still_fails_with_exit_8(cli: Any, made_backup: MadeBackup, tmp_path: Path) -> None:
    root = made_backup.copy_to(tmp_path)
    dump = next((root / made_backup.id / "postgres").iterdir())
    dump.write_bytes(dump.read_bytes()[:-10])
    checked = cli("backup", "verify", made_backup.id, "--dir", str(root))
    assert checked.exit_code == 8
    record = json.loads((root / made_backup.id / "verify.json").read_text())
    assert (record["state"], record["ok"]) == ("failed", False)
    assert _verified(cli, root)[made_backup.id].startswith("FAILED ")


def _copy(backup: Path, seconds: int, tag: str) -> Path:
    """A copy of ``backup`` as if made ``seconds`` later, under its own id."""
    from dbcli.backup import store as backup_store

    manifest = backup_store.read_manifest(backup)
    when = backup_store.parse_iso(manifest["started_at"]) + dt.timedelta(seconds=seconds)
    copy = backup.parent / f"{when.strftime('%Y%m%dT%H%M%SZ')}-default-{tag}"
    shutil.copytree(backup, copy)
    backup_store.write_manifest(copy, {k: v for k, v in manifest.items() if k != "checksum"}
                                | {"id": copy.name, "started_at": backup_store.iso(when)})
    return copy


def test_cron_recipe_marks_only_failed_backups_and_prune_keeps_one(cli: Any, made_backup: MadeBackup,
                                                                   tmp_path: Path) -> None:
    """The docs' cron lines (verify --latest --restore-test, then prune by backup.retention) on a
    profile that cannot run every check: nothing is marked failed and prune removes nothing good.
    Even when every backup really failed its verification, prune keeps the newest complete one."""
    root = made_backup.copy_to(tmp_path)
    second = _copy(root / made_backup.id, 1, "copy")
    write_config(tmp_path / "dbcli.yaml", {"postgres": made_backup.settings["postgres"],
                                           "backup": {"dir": str(root), "retention": {"keep_last": 1}}})
    assert cli("-q", "backup", "verify", "--latest", "--restore-test").exit_code == 3
    assert cli("-q", "backup", "verify", made_backup.id, "--restore-test").exit_code == 3
    assert not [v for v in _verified(cli, root).values() if v.startswith("FAILED")]
    pruned = cli("-q", "backup", "prune")
    assert pruned.exit_code == 0
    assert [p.name for p in root.iterdir() if not p.name.startswith(".")] == [second.name]

    # every backup left really damaged: verify fails them all, prune still keeps the newest
    third = _copy(second, -1, "old")
    for path in (second, third):
        dump = next((path / "postgres").iterdir())
        dump.write_bytes(b"x" + dump.read_bytes()[1:])
        assert cli("-q", "backup", "verify", path.name).exit_code == 8
    pruned = cli("backup", "prune", "-f", "json")
    assert pruned.exit_code == 0
    assert {d["id"]: (d["action"], d["reasons"]) for d in pruned.json()} == {
        second.name: ("keep", "newest complete backup: every complete backup failed its verification"),
        third.name: ("remove", "failed its last verification")}
    assert [p.name for p in root.iterdir() if not p.name.startswith(".")] == [second.name]
