"""Teardown off the wall clock: workers rename their schemas for dropping, and a detached
reaper, started once per run, drops them after the run has exited."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shoal import naming
from shoal.config import load_settings
from shoal.embedded import default_home
from shoal.pg import schemas
from shoal.report import latest_report, read_report
from tests.conftest import Databases, Server, settled
from tests.plugin import inner

TESTS = """
def test_a(shoal_databases):
    with shoal_databases["app"].connect() as conn:
        conn.execute("create table t (id int)")
        conn.commit()

def test_b(shoal_databases):
    pass

def test_c(shoal_databases):
    pass
"""


def listed(server: Server, database: str) -> list[tuple[str, str | None]]:
    with server.connect(database) as conn:
        return schemas.list_schemas(conn) + schemas.list_schemas(conn, naming.TO_DROP_LIKE)


def lingering_project(tmp_path: Path, url: str) -> tuple[Path, dict[str, str]]:
    project = inner.write_project(
        tmp_path,
        {"app": {"url": url}},
        {"test_app.py": TESTS, "conftest.py": inner.LINGERING_CONFTEST},
    )
    mark = tmp_path / "lingering"
    return project, {"LINGER_MARK": str(mark), "LINGER_S": "3"}


@pytest.mark.parametrize("xdist_args", [["-n", "0"], ["-n", "2"]], ids=["n0", "n2"])
def test_a_run_renames_its_schemas_and_its_reaper_drops_them_after_it_exits(
    tmp_path: Path, server: Server, databases: Databases, xdist_args: list[str]
) -> None:
    database = databases.new("reap")
    project, env = lingering_project(tmp_path, server.url(database))
    proc = inner.start(project, *xdist_args, "--shoal-report", env=env)
    inner.wait_for(Path(env["LINGER_MARK"]), proc)
    # The tests are over and the run is exiting: its schemas are out of the way, under
    # to-drop names, with their owner comments, not yet dropped.
    found = listed(server, database)
    assert [name for name, _ in found if naming.parse_schema(name)] == []
    renamed = [(naming.parse_to_drop(name), comment) for name, comment in found]
    assert renamed, found
    workers = {"main"} if xdist_args == ["-n", "0"] else {"gw0", "gw1"}
    assert {name.worker for name, _ in renamed if name is not None} <= workers
    namespaces = {name.namespace for name, _ in renamed if name is not None}
    assert len(namespaces) == 1
    for _, comment in renamed:
        owner = schemas.parse_owner_comment(comment)
        assert owner is not None
        assert owner["namespace"] in namespaces
    assert len(inner.reapers_of(proc)) == 1
    result = inner.finish(project, proc)
    assert result.returncode == 0, result.output
    assert settled(server, database) == []

    entry = latest_report(project / ".shoal" / "reports")
    assert entry is not None
    report = read_report(entry.path)
    tail = report.tail
    assert tail is not None
    assert tail.teardown_s is not None
    assert tail.teardown_s < 5
    assert tail.summary_s is not None
    assert tail.spawn_s is not None
    assert tail.exit_s is not None
    # Every part of the time after the report's `finished` is a figure.
    assert report.after_finished_s == pytest.approx(
        tail.summary_s + tail.spawn_s + tail.exit_s, abs=0.01
    )
    shown = subprocess.run(
        [sys.executable, "-m", "shoal", "report", str(entry.path)],
        capture_output=True,
        text=True,
        check=False,
        env=inner.clean_env(),
    )
    assert shown.returncode == 0, shown.stderr
    assert "tail: " in shown.stdout, shown.stdout
    assert "report → exit" in shown.stdout, shown.stdout


def test_keep_on_failure_keeps_the_schemas_under_their_names_and_starts_no_reaper(
    tmp_path: Path, embedded: Server, embedded_databases: Databases
) -> None:
    database = embedded_databases.new("keep")
    failing = TESTS + "\ndef test_fails(shoal_databases):\n    assert False\n"
    project = inner.write_project(
        tmp_path,
        {"app": {"url": embedded.url(database)}},
        {"test_app.py": failing, "conftest.py": inner.LINGERING_CONFTEST},
    )
    env = {"LINGER_MARK": str(tmp_path / "lingering"), "LINGER_S": "1"}
    proc = inner.start(project, "-n", "1", "--shoal-keep-on-failure", env=env)
    inner.wait_for(Path(env["LINGER_MARK"]), proc)
    assert inner.reapers_of(proc) == []
    result = inner.finish(project, proc)
    assert result.returncode == 1, result.output
    kept = settled(embedded, database)
    assert kept
    assert all(naming.parse_schema(name) for name in kept), kept
    with embedded.connect(database) as conn:
        for name in kept:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


@pytest.mark.parametrize("xdist_args", [["-n", "0"], ["-n", "2"]], ids=["n0", "n2"])
def test_a_suite_that_turns_warnings_into_errors_stays_green_with_the_reaper(
    tmp_path: Path, embedded: Server, embedded_databases: Databases, xdist_args: list[str]
) -> None:
    database = embedded_databases.new("strict")
    project = inner.write_project(
        tmp_path, {"app": {"url": embedded.url(database)}}, {"test_app.py": TESTS}
    )
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            'pythonpath = ["."]', 'pythonpath = ["."]\nfilterwarnings = ["error"]'
        )
    )
    # -X dev: a ResourceWarning at interpreter exit (an unwaited process) would be printed.
    result = inner.run(project, *xdist_args, "-W", "error", env={"PYTHONDEVMODE": "1"})
    assert result.returncode == 0, result.output
    assert "3 passed" in result.stdout
    assert "Warning" not in result.output, result.output
    assert settled(embedded, database) == []


def test_two_runs_reapers_at_once_leave_nothing(
    tmp_path: Path, server: Server, databases: Databases
) -> None:
    database = databases.new("reap2")
    projects = [
        inner.write_project(
            tmp_path / f"run{i}", {"app": {"url": server.url(database)}}, {"test_app.py": TESTS}
        )
        for i in range(2)
    ]
    procs = [inner.start(p, "-n", "2") for p in projects]
    for project, proc in zip(projects, procs, strict=True):
        result = inner.finish(project, proc)
        assert result.returncode == 0, result.output
    assert settled(server, database) == []


def test_the_reaper_logs_what_it_dropped(
    tmp_path: Path, embedded: Server, embedded_databases: Databases
) -> None:
    database = embedded_databases.new("reaplog")
    project = inner.write_project(
        tmp_path, {"app": {"url": embedded.url(database)}}, {"test_app.py": TESTS}
    )
    result = inner.run(project, "-n", "2")
    assert result.returncode == 0, result.output
    assert settled(embedded, database) == []
    namespace = re.search(r"shoal: namespace ([a-z0-9]+)", result.stdout)
    assert namespace is not None, result.stdout
    home = load_settings().home or default_home()
    log = home / "logs" / naming.pool_log_filename(namespace.group(1))
    deadline = time.monotonic() + 30
    while '{"reap"' not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, f"{log}: no reaper outcome"
        time.sleep(0.1)
    line = next(x for x in log.read_text().splitlines() if x.startswith('{"reap"'))
    done = json.loads(line)
    assert done["reap"] == namespace.group(1)
    assert len(done["dropped"]) == 2
    assert done["failed"] == []
