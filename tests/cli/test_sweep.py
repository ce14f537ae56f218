"""`shoal sweep` against real servers: fail-closed, bounded, and never touching live runs."""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NotRequired, TypedDict

import pytest
from click.testing import CliRunner

from shoal import naming
from shoal.cli.sweep import summary_line, sweep_command
from shoal.namespace import fresh
from shoal.pg import schemas
from shoal.pg.sweep import Found, decide, sweep
from tests.conftest import Databases, Server, gone, settled
from tests.plugin import inner

LONG_AGO = datetime.now(UTC) - timedelta(hours=1)


def stale_schema(server: Server, database: str, worker: str = "gw0") -> str:
    """A worker schema of a run that is gone: no connection carries its namespace."""
    namespace = fresh().token
    name = naming.schema_name(namespace, worker)
    with server.connect(database) as conn:
        comment = gone(schemas.owner_comment(namespace, worker, now=LONG_AGO))
        schemas.create_schema(conn, name, comment)
        conn.execute(f"CREATE TABLE {name}.t (id int)")
    return name


def grace_after_start(server: Server, database: str) -> int:
    """A grace period the server's own start lies outside of, so a server started a moment
    ago (as it is when the suite starts it) does not hold every schema as "server_restarted",
    yet long enough that a schema made just now is too young."""
    with server.connect(database) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM now() - pg_postmaster_start_time())"
        ).fetchone()
    assert row is not None
    age = float(str(row[0]))
    if age < 4:
        time.sleep(4 - age)
        age = 4
    return min(600, int(age) - 1)


def existing(server: Server, database: str) -> set[str]:
    with server.connect(database) as conn:
        return {s for s, _ in schemas.list_schemas(conn)}


def project_for(tmp_path: Path, databases: dict[str, str]) -> Path:
    lines = [f'[tool.shoal.databases.{k}]\nurl = "{v}"' for k, v in databases.items()]
    (tmp_path / "pyproject.toml").write_text("\n".join(lines) + "\n")
    return tmp_path


class Cluster(TypedDict):
    url: str
    reachable: bool
    error: str | None


class Outcome(TypedDict):
    dropped: NotRequired[list[str]]
    would_drop: NotRequired[list[str]]  # instead of `dropped` on a dry run
    failed: list[dict[str, str]]
    skipped: list[dict[str, str]]


class SweepReport(TypedDict):
    """What `shoal sweep --json` prints."""

    clusters: list[Cluster]
    live_namespaces: list[str]
    active_detection_complete: bool
    dry_run: bool
    ok: bool
    databases: dict[str, Outcome]
    not_looked_at: list[str]


def sweep_json(*args: str) -> tuple[int, SweepReport]:
    result = CliRunner().invoke(sweep_command, ["--json", *args])
    report: SweepReport = json.loads(result.output)
    return result.exit_code, report


def test_decide_is_fail_closed() -> None:
    now = datetime.now(UTC)
    ns = fresh().token
    schema = naming.schema_name(ns, "gw1")
    old = schemas.owner_comment(ns, "gw1", now=now - timedelta(hours=1))
    young = schemas.owner_comment(ns, "gw1", now=now)

    def reason(name: str, comment: str | None, live: set[str], complete: bool = True) -> object:
        decision = decide(Found("db", name, comment), live, complete, now, 60)
        return "drop" if decision.drop else decision.reason

    assert reason(schema, old, set()) == "drop"
    assert reason(schema, old, {ns}) == "live"
    assert reason(schema, young, set()) == "too_young"
    assert reason(schema, old, set(), complete=False) == "active_detection_incomplete"
    assert reason("test_gw0", None, set()) == "unparseable"
    assert reason(schema, None, set()) == "not_shoal"
    assert reason(schema, schemas.owner_comment("other", "gw1"), set()) == "not_shoal"


def test_killed_run_is_swept_while_a_concurrent_run_is_untouched(
    tmp_path: Path, server: Server, databases: Databases, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = {"platform": databases.new("platform"), "tenant": databases.new("tenant")}
    config = {key: {"url": server.url(db)} for key, db in names.items()}
    # The test waits for a file: the victim is killed while waiting, the survivor sleeps
    # with no connection open (only its lease shows it is alive) until released.
    waiting = """
import os, pathlib, time
def test_wait(shoal_databases):
    flag = pathlib.Path(os.environ["FLAG"])
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    (flag.parent / f"{flag.name}.started.{worker}").touch()
    deadline = time.time() + 90
    while not flag.exists() and time.time() < deadline:
        time.sleep(0.1)
def test_other(shoal_databases):
    test_wait(shoal_databases)
"""
    victim = inner.write_project(tmp_path / "victim", config, {"test_wait.py": waiting})
    survivor = inner.write_project(tmp_path / "survivor", config, {"test_wait.py": waiting})
    flags = tmp_path / "flags"
    flags.mkdir()
    victim_proc = inner.start(victim, "-n", "2", env={"FLAG": str(flags / "victim")})
    survivor_proc = inner.start(survivor, "-n", "2", env={"FLAG": str(flags / "survivor")})
    try:
        deadline = time.monotonic() + 120
        while len(list(flags.glob("*.started.*"))) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(list(flags.glob("victim.started.*"))) == 2
        assert len(list(flags.glob("survivor.started.*"))) == 2
        before = {db: existing(server, db) for db in names.values()}
        os.killpg(
            victim_proc.pid, signal.SIGKILL
        )  # the whole process group: controller and workers
        victim_proc.wait()

        sweeper = tmp_path / "sweeper"
        sweeper.mkdir()
        monkeypatch.chdir(project_for(sweeper, {k: server.url(db) for k, db in names.items()}))
        deadline = time.monotonic() + 10
        while True:  # the server notices the dead connections within moments
            code, report = sweep_json("--grace", "0")
            dropped = [s for o in report["databases"].values() for s in o["dropped"]]
            if len(dropped) == 4 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert code == 0, report
        parsed = {naming.parse_schema(s) for s in dropped}
        assert len({p.namespace for p in parsed if p}) == 1, report
        assert {p.worker for p in parsed if p} == {"gw0", "gw1"}
        for db in names.values():
            remaining = existing(server, db)
            assert remaining < before[db]
            assert len(remaining) == 2  # the survivor's two workers
        skipped = [s for o in report["databases"].values() for s in o["skipped"]]
        assert {s["reason"] for s in skipped} == {"live"}
    finally:
        (flags / "survivor").touch()
        (flags / "victim").touch()
    result = inner.finish(survivor, survivor_proc)
    assert result.returncode == 0, result.output
    assert "2 passed" in result.stdout


def test_a_killed_reapers_schemas_are_taken_by_the_next_sweep(
    tmp_path: Path, server: Server, databases: Databases
) -> None:
    database = databases.new("reaped")
    tests = "def test_a(shoal_databases):\n    pass\n\ndef test_b(shoal_databases):\n    pass\n"
    project = inner.write_project(
        tmp_path,
        {"app": {"url": server.url(database)}},
        {"test_app.py": tests, "conftest.py": inner.LINGERING_CONFTEST},
    )
    mark = tmp_path / "lingering"
    proc = inner.start(project, "-n", "2", env={"LINGER_MARK": str(mark), "LINGER_S": "2"})
    inner.wait_for(mark, proc)
    [reaper] = inner.reapers_of(proc)
    reaper.send_signal(signal.SIGKILL)  # it waits for the run to exit: nothing dropped yet
    result = inner.finish(project, proc)
    assert result.returncode == 0, result.output
    with server.connect(database) as conn:
        left = [name for name, _ in schemas.list_schemas(conn, naming.TO_DROP_LIKE)]
    assert len(left) == 2, left
    # Made seconds ago, yet taken: the names say their run is done with them, and the run
    # and its reaper are gone. No grace period applies.
    report = sweep({"app": server.url(database)}, grace_s=grace_after_start(server, database))
    assert sorted(report.databases["app"].dropped) == sorted(left), report.as_json()
    assert settled(server, database, timeout=0) == []


def test_decide_keeps_a_to_drop_schema_while_its_run_lives_unless_it_is_the_reaper() -> None:
    now = datetime.now(UTC)
    ns = fresh().token
    name = naming.to_drop_name(ns, "gw0", "0badc0de")
    comment = schemas.owner_comment(ns, "gw0", now=now)

    def reason(live: set[str], reaping: str | None = None, complete: bool = True) -> object:
        found = Found("db", name, comment)
        decision = decide(found, live, complete, now, 60, reaping=reaping)
        return "drop" if decision.drop else decision.reason

    assert reason(set()) == "drop"  # young, but its run is over: no grace
    assert reason({ns}) == "live"
    assert reason(set(), complete=False) == "active_detection_incomplete"
    assert reason({ns}, reaping=ns) == "drop"  # the run's own reaper
    assert reason({ns}, reaping=fresh().token) == "live"  # another run's reaper
    other = schemas.owner_comment(fresh().token, "gw0", now=now)
    assert decide(Found("db", name, other), set(), True, now, 60).reason == "not_shoal"
    restarted = decide(Found("db", name, comment), set(), True, now, 60, server_started=now)
    assert restarted.reason == "server_restarted"


def test_unreachable_database_means_nothing_is_dropped(
    tmp_path: Path, server: Server, databases: Databases, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = databases.new("reach")
    stale = stale_schema(server, database)
    project_for(
        tmp_path,
        {"here": server.url(database), "gone": "postgresql://bob:hunter2@127.0.0.1:1/gone"},
    )
    monkeypatch.chdir(tmp_path)
    code, report = sweep_json("--grace", "0")
    assert code == 1
    assert report["active_detection_complete"] is False
    clusters = report["clusters"]
    assert isinstance(clusters, list)
    assert [c["reachable"] for c in clusters if "127.0.0.1:1" in c["url"]] == [False]
    assert "hunter2" not in json.dumps(report)
    assert report["databases"]["here"]["dropped"] == []
    assert {"schema": stale, "reason": "active_detection_incomplete"} in report["databases"][
        "here"
    ]["skipped"]
    assert stale in existing(server, database)
    human = CliRunner().invoke(sweep_command, ["--grace", "0"])
    assert "Dropped nothing" in human.output
    assert "unreachable" in human.output


def test_a_drop_that_hits_lock_timeout_is_recorded_and_the_rest_continue(
    tmp_path: Path, server: Server, databases: Databases, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = databases.new("locked")
    locked = stale_schema(server, database, "gw0")
    free = [stale_schema(server, database, f"gw{i}") for i in (1, 2)]
    holder = server.connect(database)
    holder.autocommit = False
    holder.execute(f"SELECT * FROM {locked}.t")  # holds a lock in the schema until rollback
    try:
        project_for(tmp_path, {"app": server.url(database)})
        monkeypatch.chdir(tmp_path)
        code, report = sweep_json("--grace", "0")
    finally:
        holder.rollback()
        holder.close()
    outcome = report["databases"]["app"]
    assert code == 1
    assert sorted(outcome["dropped"]) == sorted(free)
    assert [f["schema"] for f in outcome["failed"]] == [locked]
    assert "lock timeout" in outcome["failed"][0]["error"]
    assert existing(server, database) == {locked}


def test_dry_run_drops_nothing_and_young_schemas_wait(
    tmp_path: Path, embedded: Server, embedded_databases: Databases, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = embedded_databases.new("dry")
    grace = grace_after_start(embedded, database)
    stale = stale_schema(embedded, database)
    namespace = fresh().token
    young = naming.schema_name(namespace, "gw0")
    with embedded.connect(database) as conn:
        schemas.create_schema(conn, young, gone(schemas.owner_comment(namespace, "gw0")))
    project_for(tmp_path, {"app": embedded.url(database)})
    monkeypatch.chdir(tmp_path)
    code, report = sweep_json("--dry-run", "--grace", str(grace))
    assert code == 0
    assert report["databases"]["app"]["would_drop"] == [stale]
    assert {"schema": young, "reason": "too_young"} in report["databases"]["app"]["skipped"]
    assert existing(embedded, database) == {stale, young}


def test_pre_run_summary_says_what_was_left_for_lack_of_time(
    server: Server, databases: Databases
) -> None:
    database = databases.new("budget")
    stale = [stale_schema(server, database, f"gw{i}") for i in range(2)]
    result = sweep({"app": server.url(database)}, grace_s=0, budget_s=0.0)
    assert not result.ok
    assert summary_line(result).endswith("2 left for lack of time (run shoal sweep)")
    assert existing(server, database) == set(stale)
