"""The pool through real inner runs: a run refills it in the background, the next claims."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from shoal import naming, refill_log
from shoal.idle import MAX_WAIT_S
from shoal.namespace import fresh
from shoal.pg import pool
from shoal.plan import RunPlan
from shoal.plugin.refill import NICENESS, spawn
from shoal.plugin.state import RunState
from tests.conftest import Databases, Server
from tests.plugin import inner

SCHEMA_SQL = "CREATE TABLE items (id serial PRIMARY KEY, name text);\n"

OWNER_TEST = """
import json
from recorder import record

def test_owner(shoal_schema, shoal_databases):
    with shoal_databases["app"].connect() as conn:
        comment = conn.execute(
            "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
            (shoal_schema,),
        ).fetchone()[0]
        conn.execute("INSERT INTO items (name) VALUES ('x')")
    record(schema=shoal_schema, owner=json.loads(comment))

def test_other(shoal_databases):
    pass
"""


def ready(server: Server, database: str) -> int:
    with server.connect(database) as conn:
        return sum(1 for e in pool.list_pool(conn, "app") if e.state == "ready")


def wait_for_ready(server: Server, database: str, count: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while ready(server, database) < count:
        assert time.monotonic() < deadline, f"the pool never reached {count} ready schemas"
        time.sleep(0.25)


def test_a_run_refills_the_pool_and_the_next_run_claims_from_it(
    tmp_path: Path, server: Server, databases: Databases
) -> None:
    database = databases.new("refill")
    project = inner.write_project(
        tmp_path / "project",
        {"app": {"url": server.url(database), "setup": "sql:schema.sql"}},
        {"schema.sql": SCHEMA_SQL, "test_owner.py": OWNER_TEST},
    )
    home = tmp_path / "home"
    # pool_size 1, two workers: the refill keeps one ready schema per worker of the run.
    env = {"SHOAL_POOL_SIZE": "1", "SHOAL_HOME": str(home)}

    first = inner.run(project, "-n", "2", env=env)
    assert first.returncode == 0, first.output
    assert all("pooled" not in r["owner"] for r in first.records)  # nothing to claim yet
    wait_for_ready(server, database, 2)
    logs = list((home / "logs").glob(naming.pool_log_glob()))
    assert len(logs) == 1
    assert naming.parse_pool_log_filename(logs[0].name) is not None

    (project / ".records" / "gw0.jsonl").unlink(missing_ok=True)
    (project / ".records" / "gw1.jsonl").unlink(missing_ok=True)
    second = inner.run(project, "-n", "2", env=env)
    assert second.returncode == 0, second.output
    (record,) = second.records
    assert naming.parse_pool_schema(record["owner"]["pooled"]) is not None
    assert record["owner"]["namespace"] in record["schema"]
    # And the second run's refill tops the pool up again before the database goes.
    wait_for_ready(server, database, 2)
    time.sleep(0.5)
    assert ready(server, database) == 2


# Builds in a worker, fails in the background refill (a `shoal pool warm` process).
REFILL_FAILS = """
import sys

def build(conn):
    main = getattr(sys.modules["__main__"].__spec__, "name", "")
    if main == "shoal.cli.warm":
        conn.execute("SELECT uuid_generate_v4()")
    conn.execute("CREATE TABLE items (id serial PRIMARY KEY, name text)")

build.shoal_fingerprint = "refill-fails-v1"
"""

ALWAYS_FAILS = """
def build(conn):
    conn.execute("SELECT uuid_generate_v4()")

build.shoal_fingerprint = "always-fails-v1"
"""


def test_a_failed_refill_is_reported_by_the_next_run_and_pool_status(
    tmp_path: Path, server: Server, databases: Databases
) -> None:
    database = databases.new("refillfail")
    project = inner.write_project(
        tmp_path / "project",
        {"app": {"url": server.url(database), "setup": "flaky:build"}},
        {"flaky.py": REFILL_FAILS, "test_owner.py": OWNER_TEST},
    )
    home = tmp_path / "home"
    env = {"SHOAL_POOL_SIZE": "1", "SHOAL_HOME": str(home)}
    first = inner.run(project, "-n", "0", env=env)
    assert first.returncode == 0, first.output
    deadline = time.monotonic() + 90
    while (record := refill_log.read(home, project)) is None:
        assert time.monotonic() < deadline, "the refill left no record"
        time.sleep(0.25)
    assert record.failed
    assert "uuid_generate_v4() does not exist" in record.errors["app"]

    second = inner.run(project, "-n", "0", env={**env, "SHOAL_POOL_SIZE": "0"})
    assert second.returncode == 0, second.output
    assert "the last pool refill" in second.stdout
    assert "app: setup 'flaky:build' of database 'app' failed" in second.stdout
    assert f"log: {record.log}" in second.stdout
    assert record.log is not None
    assert Path(record.log).is_file()

    status = subprocess.run(
        [sys.executable, "-m", "shoal", "pool", "status", "--json"],
        cwd=project,
        env=inner.clean_env(**env),
        capture_output=True,
        text=True,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    (row,) = json.loads(status.stdout)["databases"]
    assert "uuid_generate_v4() does not exist" in row["last_refill_error"]


def test_no_refill_after_a_run_whose_setups_all_failed(
    tmp_path: Path, server: Server, databases: Databases
) -> None:
    database = databases.new("nofill")
    project = inner.write_project(
        tmp_path / "project",
        {"app": {"url": server.url(database), "setup": "broken:build"}},
        {"broken.py": ALWAYS_FAILS, "test_owner.py": OWNER_TEST},
    )
    home = tmp_path / "home"
    result = inner.run(project, "-n", "2", env={"SHOAL_POOL_SIZE": "1", "SHOAL_HOME": str(home)})
    assert result.returncode == 1, result.output
    time.sleep(2)  # a refill would have written its log by now
    logs = home / "logs"
    assert not logs.exists() or not list(logs.glob(naming.pool_log_glob()))
    assert refill_log.read(home, project) is None


CHILD = """
import os, sys
print("niceness", os.nice(0), "argv", sys.argv[1:], flush=True)
"""


def test_a_detached_process_runs_its_module_at_a_lower_priority(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "shoal_test_child.py").write_text(CHILD)
    monkeypatch.syspath_prepend(str(modules))  # spawn hands its import path on
    plan = RunPlan.unconfigured(fresh().token, "fresh", "owner", tmp_path)
    state = RunState(replace(plan, home=str(tmp_path / "home")), "main", is_controller=False)
    pid = spawn(state, ["-m", "shoal_test_child", "one", "two"], {})
    assert pid is not None
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    log = tmp_path / "home" / "logs" / naming.pool_log_filename(plan.namespace)
    expected = min(os.nice(0) + NICENESS, 19)
    assert log.read_text().splitlines() == [f"niceness {expected} argv ['one', 'two']"]


STARTED = """
import time
print(time.time(), flush=True)
"""


@pytest.mark.usefixtures("saturated")
def test_a_detached_process_waits_for_a_free_core_but_not_for_ever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "shoal_test_started.py").write_text(STARTED)
    monkeypatch.syspath_prepend(str(modules))
    plan = RunPlan.unconfigured(fresh().token, "fresh", "owner", tmp_path)
    state = RunState(replace(plan, home=str(tmp_path / "home")), "main", is_controller=False)
    spawned = time.time()
    pid = spawn(state, ["-m", "shoal_test_started"], {})
    assert pid is not None
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    log = tmp_path / "home" / "logs" / naming.pool_log_filename(plan.namespace)
    began = float(log.read_text().split()[0]) - spawned
    # Every core is busy: the module runs only once the wait's bound has passed.
    assert MAX_WAIT_S - 0.5 <= began < MAX_WAIT_S + 5
