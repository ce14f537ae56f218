"""``shoal locks`` against real servers: a blocking pair made here is named by run and worker."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from shoal import naming
from shoal.cli import cli
from shoal.cli.locks import locks_command
from shoal.namespace import fresh
from tests.cli.conftest import Project
from tests.conftest import Databases, Server, token

Conn = psycopg.Connection[Any]


def connect(url: str, label: str, *, autocommit: bool = True) -> Conn:
    # lock_timeout: a waiter must never outlive the test if the release goes wrong.
    return psycopg.connect(
        url, application_name=label, options="-c lock_timeout=60s", autocommit=autocommit
    )


def wait_until_blocked(probe: Conn, pid: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        row = probe.execute(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
        if row is not None and row[0] == "Lock":
            return
        time.sleep(0.05)
    raise AssertionError(f"backend {pid} never started waiting for a lock")


class Pair:
    """A holder (run A, gw0) with ACCESS EXCLUSIVE on a table, a labelled waiter (run B, gw1)
    queued behind it, and an unlabelled session queued behind both."""

    def __init__(self, server: Server, database: str) -> None:
        url = server.url(database)
        self.holder_run, self.waiter_run = fresh().token, fresh().token
        self.bystander_name = f"shoalt_{token()}"
        self.probe = server.connect(database)
        self.probe.execute("CREATE TABLE contested (id int)")
        self.holder = connect(
            url, naming.connection_label("gw0", self.holder_run), autocommit=False
        )
        self.waiter = connect(url, naming.connection_label("gw1", self.waiter_run, "migrate"))
        self.bystander = connect(url, self.bystander_name)
        self.pool = ThreadPoolExecutor(2)
        self.futures: list[Future[Any]] = []

    def block(self) -> None:
        self.holder.execute("LOCK TABLE contested IN ACCESS EXCLUSIVE MODE")
        self.futures.append(
            self.pool.submit(self.waiter.execute, "ALTER TABLE contested ADD COLUMN note text")
        )
        wait_until_blocked(self.probe, self.waiter.info.backend_pid)
        self.futures.append(
            self.pool.submit(self.bystander.execute, "SELECT count(*) FROM contested")
        )
        wait_until_blocked(self.probe, self.bystander.info.backend_pid)

    def release(self) -> None:
        self.holder.rollback()
        for future in self.futures:
            future.result(timeout=30)
        self.pool.shutdown()
        for conn in (self.holder, self.waiter, self.bystander, self.probe):
            conn.close()


@pytest.fixture
def pair(server: Server, databases: Databases) -> Iterator[Pair]:
    made = Pair(server, databases.new("locks"))
    try:
        made.block()
        yield made
    finally:
        made.release()


def test_a_real_blocking_pair_is_named_by_run_and_worker(
    server: Server, pair: Pair, project: Project
) -> None:
    project({"app": server.url(pair.probe.info.dbname)})
    result = CliRunner().invoke(locks_command, ["--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    entries = {e["waiting"]["pid"]: e for e in data["blocked"]}

    waiter = entries[pair.waiter.info.backend_pid]
    expected = {"labelled": True, "run": pair.waiter_run, "worker": "gw1", "role": "migrate"}
    assert waiter["waiting"].items() >= expected.items()
    assert "ALTER TABLE contested ADD COLUMN note text" in waiter["waiting"]["query"]
    assert (waiter["wait_event_type"], waiter["wait_event"]) == ("Lock", "relation")
    assert waiter["waited_s"] >= 0
    [holder] = waiter["blocked_by"]
    assert (holder["pid"], holder["run"], holder["worker"]) == (
        pair.holder.info.backend_pid,
        pair.holder_run,
        "gw0",
    )
    assert holder["state"] == "idle in transaction"
    assert waiter["summary"].startswith(
        f"run {pair.waiter_run}, worker gw1 (migrate) is blocked by "
        f"run {pair.holder_run}, worker gw0 (Lock/relation, "
    )

    # The unlabelled session waits for the holder and for the waiter queued ahead of it.
    bystander = entries[pair.bystander.info.backend_pid]
    assert bystander["waiting"]["labelled"] is False
    assert bystander["waiting"]["application_name"] == pair.bystander_name
    assert bystander["waiting"]["user"]
    assert {b["pid"] for b in bystander["blocked_by"]} == {
        pair.holder.info.backend_pid,
        pair.waiter.info.backend_pid,
    }
    assert bystander["summary"].startswith(
        f"unlabelled session pid {pair.bystander.info.backend_pid} ({pair.bystander_name}, "
    )
    roots = {r["pid"] for r in data["root_blockers"]}
    assert pair.holder.info.backend_pid in roots
    assert pair.waiter.info.backend_pid not in roots

    [cluster] = data["clusters"]
    assert cluster["reachable"] is True
    table = cluster["lock_table"]
    assert table["held"] >= 3
    assert table["capacity"] == table["max_locks_per_transaction"] * (
        table["max_connections"] + table["max_prepared_transactions"]
    )


def test_human_output_reads_as_runs_and_workers(
    server: Server, pair: Pair, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # one table row per line, nothing wrapped
    project({"app": server.url(pair.probe.info.dbname)})
    result = CliRunner().invoke(locks_command, [])
    assert result.exit_code == 0, result.output
    first_cell = f"│ run {pair.waiter_run}, worker gw1 (migrate) "
    [row] = [line for line in result.output.splitlines() if line.startswith(first_cell)]
    assert f"run {pair.holder_run}, worker gw0" in row
    assert "Lock/relation" in row
    assert f"Holding the others up: run {pair.holder_run}, worker gw0" in result.output
    assert "Nothing is blocked" not in result.output
    assert "Lock table" in result.output


def test_nothing_is_blocked(quiet_server: str, project: Project) -> None:
    project({"app": quiet_server})
    result = CliRunner().invoke(locks_command, [])
    assert result.exit_code == 0, result.output
    assert "Nothing is blocked." in result.output
    data = json.loads(CliRunner().invoke(locks_command, ["--json"]).output)
    assert data["blocked"] == []
    assert data["root_blockers"] == []


def test_unreachable_server_is_reported_with_its_password_masked(
    server: Server, databases: Databases, project: Project
) -> None:
    project(
        {
            "app": server.url(databases.new("locks")),
            "gone": "postgresql://shoal:s3cret@127.0.0.1:1/nowhere",
        },
        connect_timeout=2,
    )
    for args in ([], ["--json"]):
        result = CliRunner().invoke(locks_command, args)
        assert result.exit_code == 1, result.output
        assert "s3cret" not in result.output
        assert "Traceback" not in result.output
    data = json.loads(result.output)
    gone = next(c for c in data["clusters"] if c["cluster"] == "127.0.0.1:1")
    assert gone["reachable"] is False
    assert gone["url"] == "postgresql://shoal:***@127.0.0.1:1/nowhere"
    assert "Connection refused" in gone["error"]
    assert any(c["reachable"] and c["lock_table"] for c in data["clusters"])


def test_bad_setting_is_a_usage_error(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project({"app": "postgresql://localhost/x"})
    monkeypatch.setenv("SHOAL_CONNECT_TIMEOUT", "soon")
    # The CLI's own error boundary, around this command alone.
    boundary = type(cli)(commands=[locks_command])
    result = CliRunner().invoke(boundary, ["locks"])
    assert result.exit_code == 2, result.output
    assert "connect_timeout = 'soon' (from environment SHOAL_CONNECT_TIMEOUT)" in result.output
