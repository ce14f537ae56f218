"""``shoal ps`` against real servers: runs made here through shoal's own engine."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner

from shoal.cli.ps import ps_command
from shoal.namespace import fresh
from shoal.pg.worker import WorkerSchemas
from shoal.plan import Target
from tests.cli.conftest import Project
from tests.conftest import Databases, Server


@dataclass
class Runs:
    url: str  # the database both runs have schemas in
    live: str  # namespace whose workers still hold their leases
    dead: str  # namespace whose worker kept its schema and went away


@pytest.fixture
def runs(server: Server, databases: Databases) -> Iterator[Runs]:
    url = server.url(databases.new("ps"))
    target = Target(
        name="app",
        url=url,
        control_url=server.admin_url,
        setup=None,
        extensions=(),
        export_env=(),
        embedded=False,
    )
    live_ns, dead_ns = fresh().token, fresh().token
    live = [WorkerSchemas([target], live_ns, worker, ddl_slots=2) for worker in ("gw0", "gw1")]
    dead = WorkerSchemas([target], dead_ns, "gw1", ddl_slots=2)
    try:
        for worker in live:
            worker.provision()  # the lease stays open until teardown: live
        dead.provision()
        assert dead.teardown(keep=True) == []  # schema kept, lease closed: dead
        yield Runs(url=url, live=live_ns, dead=dead_ns)
    finally:
        for worker in [*live, dead]:
            assert worker.teardown(keep=False) == []


def namespaces(output: str) -> dict[str, dict[str, Any]]:
    return {n["namespace"]: n for n in json.loads(output)["namespaces"]}


def test_ps_tells_a_live_run_from_a_dead_one(runs: Runs, project: Project) -> None:
    project({"app": runs.url})
    result = CliRunner().invoke(ps_command, ["--json"])
    assert result.exit_code == 0, result.output
    found = namespaces(result.output)
    owner = [{"host": socket.gethostname(), "pid": os.getpid()}]

    live = found[runs.live]
    assert live["status"] == "live"
    assert (live["workers"], live["databases"]) == (["gw0", "gw1"], ["app"])
    assert live["lease_holders"] == ["gw0", "gw1"]
    assert live["owners"] == owner
    assert live["created"] is not None
    assert 0 <= live["age_s"] < 600

    dead = found[runs.dead]
    assert dead["status"] == "dead"
    assert (dead["workers"], dead["databases"]) == (["gw1"], ["app"])
    assert dead["lease_holders"] == []
    assert dead["owners"] == owner
    assert 0 <= dead["age_s"] < 600

    data = json.loads(result.output)
    assert [c["reachable"] for c in data["clusters"]] == [True]
    assert [(d["name"], d["listed"]) for d in data["databases"]] == [("app", True)]


def test_human_output(runs: Runs, project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # one table row per line, nothing wrapped
    project({"app": runs.url})
    result = CliRunner().invoke(ps_command, [])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    [live] = [line for line in lines if runs.live in line]
    [dead] = [line for line in lines if runs.dead in line]
    assert " live " in live
    assert "gw0, gw1" in live
    assert f"{socket.gethostname()} pid {os.getpid()}" in live
    assert " dead " in dead
    assert " app " in dead


def test_unreachable_server_makes_liveness_unknown_not_dead(runs: Runs, project: Project) -> None:
    project(
        {"app": runs.url, "gone": "postgresql://shoal:s3cret@127.0.0.1:1/nowhere"},
        connect_timeout=2,
    )
    for args in ([], ["--json"]):
        result = CliRunner().invoke(ps_command, args)
        assert result.exit_code == 1, result.output
        assert "s3cret" not in result.output
        assert "Traceback" not in result.output
    data = json.loads(result.output)
    gone = next(c for c in data["clusters"] if c["cluster"] == "127.0.0.1:1")
    assert (gone["reachable"], gone["url"]) == (
        False,
        "postgresql://shoal:***@127.0.0.1:1/nowhere",
    )
    assert "Connection refused" in gone["error"]
    listed = {d["name"]: d["listed"] for d in data["databases"]}
    assert listed == {"app": True, "gone": False}
    found = namespaces(result.output)
    assert found[runs.live]["status"] == "live"
    assert found[runs.dead]["status"] == "unknown"


def test_no_namespaces(quiet_server: str, project: Project) -> None:
    project({"app": quiet_server})
    result = CliRunner().invoke(ps_command, [])
    assert result.exit_code == 0, result.output
    assert "No shoal namespaces found." in result.output
    assert json.loads(CliRunner().invoke(ps_command, ["--json"]).output)["namespaces"] == []
