"""Activity writes that scale with the server (issue 19, items 4 and 5).

On FerretDB 1.24 an ingest of 30,000 events over 3,000 users did not finish in 240 s: every update
statement read the whole collection. Now it finishes (about 20 CPU-seconds of FerretDB/SQLite at
the default batch size, measured), and a dead batch is finished from the plan in its journal
entry, without reading the events. On FerretDB 2.7 the same file took minutes while buckets had a
unique compound index (raw pymongo too); with their key in ``_id`` it takes under a minute.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import monitoring

from tests.fix_activity import BASE, ActivityEnv, assert_consistent, make_events, write_jsonl
from tests.helpers import invoke, run_entry

# wall-clock limit of the 30k-event ingest: ~50 s on a 2-core machine at load 10, ~20 s idle
SCALE_LIMIT = 180


def test_30k_events_over_3000_users_finish(act: ActivityEnv, tmp_path: Path) -> None:
    # on FerretDB 2.7 too, since buckets are unique by their _id, not by a compound unique index
    # (that one made every bucket write cost time proportional to the collection there)
    act.set_config(activity={"bucket_size": 200})
    act.cap = 200
    act.add_users(2995, start=6)
    rng = random.Random(19)
    events = [{"user_id": rng.randint(1, 3000), "type": rng.choice(["login", "page.view", "buy"]),
               "timestamp": (BASE + dt.timedelta(seconds=i * 24 * 3600 / 30_000)).isoformat()}
              for i in range(30_000)]
    path = write_jsonl(tmp_path / "big.jsonl", events)
    r = run_entry(["activity", "ingest", str(path), "-f", "json"], timeout=SCALE_LIMIT)
    assert r.exit_code == 0, r.stderr
    assert (r.json()["inserted"], r.json()["duplicates"]) == (30_000, 0)
    state = assert_consistent(act)
    assert sum(s["activity_count"] for s in state["stats"].values()) == 30_000


class EventReads(monitoring.CommandListener):
    def __init__(self) -> None:
        self.reads: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in ("find", "aggregate", "count", "distinct") \
                and event.command.get(event.command_name) == "user_activities":
            self.reads.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
def event_reads() -> Iterator[EventReads]:
    listener = EventReads()
    monitoring.register(listener)  # clients created from now on; pymongo has no unregister
    yield listener
    listener.reads = []


@pytest.mark.parametrize("point", ["buckets", "stats"])
def test_a_batch_that_recorded_its_plan_is_finished_without_reading_the_events(
        act: ActivityEnv, tmp_path: Path, load_cfg: Any, event_reads: EventReads, point: str) -> None:
    from dbcli.shop.activity.session import open_session

    with open_session(load_cfg()) as s:
        if not s.rewrite:
            pytest.skip("the plan in the journal is FerretDB 1.x's write path; elsewhere counters take $inc")
    path = write_jsonl(tmp_path / "events.jsonl", make_events(60))
    crashed = run_entry(["activity", "ingest", str(path)], env={"DBCLI_TEST_CRASH_AFTER": point})
    assert crashed.exit_code == 137, crashed.stderr
    event_reads.reads = []
    r = invoke(["activity", "record", "--user", "1", "--type", "login", "--event-id", "after-crash", "-q"])
    assert r.exit_code == 0, r.stderr
    assert event_reads.reads == []  # recovery replayed the plan: nothing recomputed from the events
    state = assert_consistent(act)
    assert sum(s["activity_count"] for s in state["stats"].values()) == 61


def test_events_go_in_commands_of_insert_chunk_and_duplicates_are_found_in_each(
        act: ActivityEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # FerretDB 2.7 refuses an insert of more than 25,000 documents: a batch goes in several commands
    from dbcli.shop.activity import writer

    monkeypatch.setattr(writer, "INSERT_CHUNK", 7)
    path = write_jsonl(tmp_path / "events.jsonl", make_events(30))
    first = invoke(["activity", "ingest", str(path), "--batch-size", "20", "-f", "json"])
    assert first.exit_code == 0, first.stderr
    more = write_jsonl(tmp_path / "more.jsonl", make_events(30) + make_events(12, seed=8))
    again = invoke(["activity", "ingest", str(more), "--batch-size", "50", "-f", "json"])
    assert again.exit_code == 0, again.stderr
    assert (again.json()["inserted"], again.json()["duplicates"]) == (12, 30)
    assert sum(s["activity_count"] for s in assert_consistent(act)["stats"].values()) == 42


class Commands(monitoring.CommandListener):
    """The commands clients created from now on start: ``of(name, collection)`` lists them."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any, dict[str, Any]]] = []
        monitoring.register(self)  # pymongo has no unregister

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.seen.append((event.command_name, event.command.get(event.command_name), dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def of(self, name: str, collection: str) -> list[dict[str, Any]]:
        return [cmd for n, coll, cmd in self.seen if (n, coll) == (name, collection)]


def test_a_file_ingested_again_sends_no_event_the_server_would_refuse(
        act: ActivityEnv, tmp_path: Path, load_cfg: Any) -> None:
    # FerretDB 2.7 takes ~18 ms per duplicate its unique index refuses: a 50,000-event file
    # ingested again outlasted the 60 s socket timeout (bench_activity.py, recovery rerun)
    from dbcli.shop.activity.session import open_session

    with open_session(load_cfg()) as s:
        if s.rewrite:
            pytest.skip("on FerretDB 1.x that read would scan the whole collection: duplicates go to the insert")
    path = write_jsonl(tmp_path / "events.jsonl", make_events(90))
    assert invoke(["activity", "ingest", str(path), "--batch-size", "30", "-q"]).exit_code == 0
    more = write_jsonl(tmp_path / "more.jsonl", make_events(90) + make_events(20, seed=9))
    commands = Commands()
    r = invoke(["activity", "ingest", str(more), "--batch-size", "30", "-f", "json"])
    assert r.exit_code == 0, r.stderr
    assert (r.json()["inserted"], r.json()["duplicates"]) == (20, 90)
    # only the new events were sent
    assert sum(len(cmd.get("documents") or []) for cmd in commands.of("insert", "user_activities")) == 20
    assert sum(s["activity_count"] for s in assert_consistent(act)["stats"].values()) == 110


def test_recovery_reads_only_the_buckets_of_the_hours_the_dead_batch_wrote(
        act: ActivityEnv, tmp_path: Path, load_cfg: Any) -> None:
    from dbcli.shop.activity.session import open_session

    with open_session(load_cfg()) as s:
        if s.rewrite:
            pytest.skip("FerretDB 1.x replays the batch's plan, or recomputes under its writer lock")
    path = write_jsonl(tmp_path / "old.jsonl", make_events(60, hours=3))
    assert invoke(["activity", "ingest", str(path), "-q"]).exit_code == 0
    late = BASE + dt.timedelta(hours=7)
    events = [{"user_id": 1 + i % 5, "type": "login", "timestamp": (late + dt.timedelta(seconds=i)).isoformat()}
              for i in range(10)]
    crashed = run_entry(["activity", "ingest", str(write_jsonl(tmp_path / "late.jsonl", events))],
                        env={"DBCLI_TEST_CRASH_AFTER": "events"})
    assert crashed.exit_code == 137, crashed.stderr
    commands = Commands()
    r = invoke(["activity", "rebuild-stats", "--user", "1", "-q"])  # any writer recovers first
    assert r.exit_code == 0, r.stderr
    hour = late.strftime("%Y-%m-%dT%H")
    first = commands.of("find", "activity_buckets")[0]  # the recovery's, before rebuild-stats reads
    assert first["filter"] == {"user_id": {"$in": [1, 2, 3, 4, 5]}, "hour": {"$in": [hour]}}
    state = assert_consistent(act)
    assert sum(s["activity_count"] for s in state["stats"].values()) == 70
