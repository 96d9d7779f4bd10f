"""Retention keeps incremental chains whole, and the WAL archive what the oldest physical backup needs
(manifests and files only: no server)."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

import pytest

from dbcli.backup.physical import chain, wal
from dbcli.backup.retention import Policy, plan
from dbcli.backup.store import BackupInfo


def physical(backup_id: str, day: int, parents: list[str]) -> BackupInfo:
    manifest: dict[str, Any] = {"id": backup_id, "status": "ok", "kind": "physical",
                                "physical": {"chain": parents, "incremental_of": parents[-1] if parents else None}}
    return BackupInfo(id=backup_id, path=None, manifest=manifest, time=dt.datetime(2026, 12, day, tzinfo=dt.UTC))


def test_a_kept_incremental_keeps_its_chain() -> None:
    full = physical("full", 1, [])
    first = physical("incr1", 2, ["full"])
    second = physical("incr2", 3, ["full", "incr1"])
    newer_full = physical("full2", 4, [])
    decisions = {d.backup.id: d for d in plan([full, first, second, newer_full], Policy(keep_last=2))}
    assert decisions["incr2"].keep and decisions["full2"].keep
    assert decisions["incr1"].keep and decisions["incr1"].reasons == ["needed by incremental backup incr2"]
    assert decisions["full"].keep and decisions["full"].reasons == ["needed by incremental backup incr2"]
    decisions = {d.backup.id: d for d in plan([full, first, second, newer_full], Policy(keep_last=1))}
    assert [i for i, d in decisions.items() if d.keep] == ["full2"]


def test_wal_older_than_the_oldest_physical_backup_is_pruned(tmp_path: Path) -> None:
    names = [f"00000001000000000000000{n}" for n in range(1, 6)]
    (tmp_path / "wal").mkdir()
    for name in [*names, "00000002.history"]:
        (tmp_path / "wal" / name).write_bytes(b"x")
    assert wal.prune_before(tmp_path, names[2]) == 2
    assert wal.segments(tmp_path) == names[2:]
    assert (tmp_path / "wal" / "00000002.history").exists()
    run = wal.reachable(wal.segments(tmp_path), names[2])
    assert run is not None and run.last == names[4] and run.gap_after is None and run.end_lsn == "0/6000000"
    (tmp_path / "wal" / names[3]).unlink()
    run = wal.reachable(wal.segments(tmp_path), names[2])
    assert run is not None and run.last == names[2] and run.gap_after == names[2]
    assert chain.prune_wal(tmp_path) == 0  # no physical backup: nothing is removed


def test_segment_names_and_lsns() -> None:
    assert wal.segment_of("0/3000028", 1) == "000000010000000000000003"
    assert wal.segment_of("1/2000000", 2) == "000000020000000100000002"
    assert wal.format_lsn(wal.parse_lsn("A/FF")) == "A/FF"


def test_the_same_segment_again_is_made_durable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run killed after its link but before the directory fsync left a segment that a crash could
    lose; the server's retry found it, said "already archived" and fsynced nothing."""
    segment = tmp_path / "seg"
    segment.write_bytes(b"a" * 8192)
    name = "0000000100000000000000A0"
    assert wal.archive(tmp_path, segment, name) == "archived"
    synced: list[Path] = []
    monkeypatch.setattr(wal, "fsync_path", synced.append)
    assert wal.archive(tmp_path, segment, name) == "already archived"
    assert synced == [tmp_path / "wal" / name, tmp_path / "wal"]


def test_prune_removes_what_killed_archive_runs_left(tmp_path: Path) -> None:
    names = [f"00000001000000000000000{n}" for n in range(1, 4)]
    (tmp_path / "wal").mkdir()
    for name in names:
        (tmp_path / "wal" / name).write_bytes(b"x")
    stale, fresh = tmp_path / "wal" / f".{names[2]}.99.tmp", tmp_path / "wal" / f".{names[2]}.98.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")  # an archive run copying now
    os.utime(stale, (time.time() - 2 * wal.STALE_TMP_S,) * 2)
    assert wal.prune_before(tmp_path, names[1]) == 1
    assert not stale.exists() and fresh.exists()
