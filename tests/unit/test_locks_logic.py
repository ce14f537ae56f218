"""shoal locks without a server: labels to runs and workers, grouping, roots, wording."""

from __future__ import annotations

from typing import Any

import pytest

from shoal import naming
from shoal.cli.locks import summary, who
from shoal.cli.render import duration
from shoal.pg.locks import Blocked, LockPressure, Session, diagnose, roots, shorten

RUN_A = "p123t1700000000rdeadbeef"
RUN_B = "p456t1700000000rcafef00d"


def row(waiter: int, blocker: int, **overrides: Any) -> dict[str, Any]:
    """One (waiter, blocker) row as BLOCKED_SQL returns it."""
    values: dict[str, Any] = {
        "pid": waiter,
        "application_name": naming.connection_label("gw1", RUN_B),
        "user": "app",
        "database": "app_test",
        "state": "active",
        "query": "ALTER TABLE orgs ADD COLUMN note text",
        "wait_event_type": "Lock",
        "wait_event": "relation",
        "waited_s": 3.24,
        "blocker_pid": blocker,
        "blocker_application_name": naming.connection_label("gw0", RUN_A),
        "blocker_user": "app",
        "blocker_database": "app_test",
        "blocker_state": "idle in transaction",
        "blocker_query": "LOCK TABLE orgs",
        "blocker_exists": True,
    }
    values.update(overrides)
    return values


def test_labelled_sessions_become_run_and_worker() -> None:
    label = naming.connection_label("gw3", RUN_A, "setup")
    session = Session.from_activity(7, label, "app", "db", "active", "SELECT 1")
    assert (session.run, session.worker, session.role, session.labelled) == (
        RUN_A,
        "gw3",
        "setup",
        True,
    )
    assert who(session) == f"run {RUN_A}, worker gw3 (setup)"


def test_a_lease_is_named_by_the_worker_holding_it() -> None:
    session = Session.from_activity(7, naming.lease_label(RUN_A, "gw2"), None, None, None, None)
    assert (session.run, session.worker, session.role) == (RUN_A, "gw2", "lease")
    assert who(session) == f"run {RUN_A}, worker gw2 (lease)"


def test_a_truncated_label_still_names_its_run() -> None:
    label = naming.connection_label("gw12", RUN_A, "x" * 80)
    session = Session.from_activity(7, label, None, None, None, None)
    assert (session.run, session.worker) == (RUN_A, "gw12")


@pytest.mark.parametrize("name", [None, "", "psql", "pytest_gw0_Not-A-Namespace", "pytest_"])
def test_unlabelled_sessions_are_shown_as_such(name: str | None) -> None:
    session = Session.from_activity(42, name, "alice", "db", "active", "SELECT 1")
    assert not session.labelled
    assert who(session) == (
        f"unlabelled session pid 42 ({name or 'no application_name'}, user alice)"
    )


def test_prepared_transactions_and_ended_blockers() -> None:
    assert who(Session(pid=0, exists=False)) == "a prepared transaction"
    assert who(Session(pid=99, exists=False)) == "pid 99 (ended meanwhile)"


def test_rows_group_into_one_entry_per_waiter_and_read_as_a_sentence() -> None:
    third = naming.connection_label("main", "forced1")
    rows = [
        row(10, 5),
        row(11, 5, application_name="psql", query="SELECT * FROM orgs", waited_s=75.0),
        row(11, 10, blocker_application_name=third, blocker_state="active"),
    ]
    first, second = diagnose("db:5432", rows)
    assert [b.pid for b in second.blocked_by] == [5, 10]
    assert summary(first) == (
        f"run {RUN_B}, worker gw1 is blocked by run {RUN_A}, worker gw0 "
        "(Lock/relation, 3.2 s): ALTER TABLE orgs ADD COLUMN note text"
    )
    assert summary(second) == (
        f"unlabelled session pid 11 (psql, user app) is blocked by run {RUN_A}, worker gw0 "
        "and run forced1, worker main (Lock/relation, 1 min 15 s): SELECT * FROM orgs"
    )
    # Only the holder that waits for nothing starts the chain.
    assert [(c, s.pid) for c, s in roots([first, second])] == [("db:5432", 5)]


def test_roots_keep_clusters_apart() -> None:
    # pid 10 waits on one cluster; a pid 10 on another cluster is a different backend.
    here = diagnose("a:5432", [row(10, 5)])
    there = diagnose("b:5432", [row(20, 10)])
    assert sorted((c, s.pid) for c, s in roots(here + there)) == [("a:5432", 5), ("b:5432", 10)]


def test_negative_waits_are_clamped_and_missing_ones_unknown() -> None:
    [early] = diagnose("c", [row(1, 2, waited_s=-0.001)])
    [unknown] = diagnose("c", [row(1, 2, waited_s=None)])
    assert early.waited_s == 0.0
    assert unknown.waited_s is None
    assert "(Lock/relation, ?)" in summary(unknown)


def test_queries_are_one_short_line_without_passwords() -> None:
    assert shorten("SELECT\n   1,\t2") == "SELECT 1, 2"
    long = shorten("SELECT " + "x, " * 100)
    assert len(long) == 120
    assert long.endswith("…")
    assert shorten("ALTER ROLE app PASSWORD 'hunter2' VALID UNTIL 'infinity'") == (
        "ALTER ROLE app PASSWORD '***' VALID UNTIL 'infinity'"
    )
    assert "hunter2" not in shorten("SELECT dblink('postgresql://app:hunter2@db/x', 'q')")
    assert "hunter2" not in shorten("SELECT dblink('host=db password=hunter2', 'q')")
    assert shorten(None) == ""


def test_lock_pressure() -> None:
    pressure = LockPressure(
        held=1600, max_locks_per_transaction=64, max_connections=90, max_prepared_transactions=10
    )
    assert pressure.capacity == 6400
    assert pressure.percent == 25.0
    assert pressure.as_json()["percent"] == 25.0
    assert LockPressure(5, 0, 0, 0).percent == 0.0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "?"),
        (0.04, "0.0 s"),
        (3.24, "3.2 s"),
        (42.9, "42 s"),
        (75, "1 min 15 s"),
        (7500, "2 h 5 min"),
        (273600, "3 d 4 h"),
    ],
)
def test_duration(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


def test_blocked_json_is_stable() -> None:
    [entry] = diagnose("c", [row(1, 2)])
    assert isinstance(entry, Blocked)
    data = entry.as_json()
    assert set(data) == {
        "cluster",
        "waiting",
        "blocked_by",
        "wait_event_type",
        "wait_event",
        "waited_s",
    }
    assert set(data["waiting"]) == {
        "pid",
        "labelled",
        "run",
        "worker",
        "role",
        "application_name",
        "user",
        "database",
        "state",
        "query",
        "exists",
    }
