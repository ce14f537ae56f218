"""``--shoal-report``: real inner runs write one report each, with every test in it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shoal import naming
from shoal.report import RunReport, list_reports, read_report, startup_parts
from tests.conftest import Databases, Server, settled
from tests.plugin import inner

OUTCOMES_TEST = """
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("fixture broke")

def test_pass_1(shoal_databases):
    with shoal_databases["app"].connect() as conn:
        conn.execute("select 1")

def test_pass_2(shoal_databases):
    pass

def test_pass_3():
    pass

def test_pass_4():
    pass

def test_fail():
    assert False

def test_error(broken):
    pass

@pytest.mark.skip(reason="not today")
def test_skip():
    pass

@pytest.mark.xfail(strict=False)
def test_xfail():
    assert False

@pytest.mark.xfail(strict=False)
def test_xpass():
    pass
"""

EXPECTED = {
    "test_outcomes.py::test_pass_1": "passed",
    "test_outcomes.py::test_pass_2": "passed",
    "test_outcomes.py::test_pass_3": "passed",
    "test_outcomes.py::test_pass_4": "passed",
    "test_outcomes.py::test_fail": "failed",
    "test_outcomes.py::test_error": "error",
    "test_outcomes.py::test_skip": "skipped",
    "test_outcomes.py::test_xfail": "xfailed",
    "test_outcomes.py::test_xpass": "xpassed",
}


def namespace_of(stdout: str) -> str:
    match = re.search(r"shoal: namespace (\S+)", stdout)
    assert match is not None, stdout
    return match.group(1)


def only_report(directory: Path) -> tuple[Path, RunReport]:
    (entry,) = list_reports(directory)
    return entry.path, read_report(entry.path)


@pytest.mark.parametrize(
    ("xdist_args", "config"),
    [(["-n", "0"], "pyproject"), (["-n", "2"], "ini")],
    ids=["n0-pyproject", "n2-ini"],
)
def test_report_has_every_test_worker_and_provisioning(
    tmp_path: Path,
    embedded: Server,
    embedded_databases: Databases,
    xdist_args: list[str],
    config: str,
) -> None:
    shoal: dict[str, object] = {"reports_dir": "out/reports"} if config == "pyproject" else {}
    project = inner.write_project(
        tmp_path,
        {"app": {"url": embedded.url(embedded_databases.new("report"))}},
        {"test_outcomes.py": OUTCOMES_TEST},
        shoal=shoal,
    )
    ini = [] if config == "pyproject" else ["-o", "shoal_reports_dir=out/reports"]
    result = inner.run(project, *xdist_args, *ini, "--shoal-report")
    assert result.returncode == 1, result.output  # one test fails on purpose

    path, report = only_report(project / "out" / "reports")
    namespace = namespace_of(result.stdout)
    assert report.namespace == namespace
    assert naming.parse_report_filename(path.name) == (
        report.started.replace(microsecond=0),
        namespace,
    )
    assert f"shoal: report written to {path}" in result.stdout
    assert report.exit_status == 1
    assert "--shoal-report" in report.args
    assert report.versions.pytest == pytest.__version__
    assert report.started < report.finished

    assert {t.nodeid: t.outcome for t in report.tests} == EXPECTED
    workers = {"main"} if xdist_args[1] == "0" else {"gw0", "gw1"}
    assert {t.worker for t in report.tests} == workers
    for test in report.tests:
        assert test.start <= test.stop
        assert report.started.timestamp() <= test.start <= report.finished.timestamp()

    usage = {u.worker: u for u in report.workers}
    assert set(usage) == workers
    assert sum(u.tests for u in usage.values()) == len(EXPECTED)
    for u in usage.values():
        assert u.busy_s > 0
        assert u.idle_s >= 0
        assert 0 < u.utilisation <= 1

    # Each worker provisioned its schema in the one configured database.
    assert sorted((p.worker, p.database) for p in report.provisioning) == sorted(
        (w, "app") for w in workers
    )
    for timing in report.provisioning:
        assert timing.total_s >= timing.create_s > 0

    # Each process that ran tests split its start-up; the parts add up to its time from
    # its creation to its first test, plus its provisioning.
    parts = {p.worker: p for p in startup_parts(report)}
    assert set(parts) == workers
    for worker, part in parts.items():
        (marks,) = [m for m in report.startup if m.worker == worker]
        first = min(t.start for t in report.tests if t.worker == worker)
        assert part.imports_s > 0
        assert part.shoal_s > 0
        assert part.collection_s > 0
        assert part.provisioning_s > 0
        assert part.total_s == pytest.approx(first - marks.started + part.provisioning_s)


def test_no_report_without_the_flag(tmp_path: Path) -> None:
    project = inner.write_project(
        tmp_path,
        {},
        {"test_one.py": "def test_one():\n    pass\n"},
        shoal={"reports_dir": "out/reports"},
    )
    result = inner.run(project, "-n", "0")
    assert result.returncode == 0, result.output
    assert not (project / "out").exists()
    assert "report written" not in result.stdout


def test_a_test_that_crashes_its_worker_is_reported_failed(tmp_path: Path) -> None:
    crash = """
import os

def test_fine():
    pass

def test_crash():
    os._exit(3)
"""
    project = inner.write_project(
        tmp_path, {}, {"test_crash.py": crash}, shoal={"reports_dir": "reports"}
    )
    result = inner.run(project, "-n", "2", "--shoal-report")
    assert result.returncode == 1, result.output
    _, report = only_report(project / "reports")
    outcomes = {t.nodeid: (t.outcome, t.worker) for t in report.tests}
    assert outcomes["test_crash.py::test_crash"][0] == "failed"
    assert outcomes["test_crash.py::test_fine"][0] == "passed"
    # Reported against the worker that crashed, not its replacement.
    assert outcomes["test_crash.py::test_crash"][1] in {"gw0", "gw1"}
    # No provisioning without configured databases, and the workers still add up.
    assert report.provisioning == ()
    assert sum(u.tests for u in report.workers) == 2


# The test leaves a session behind that holds a lock on a table of its schema for a few
# seconds: a DROP SCHEMA would wait out its lock timeout and fail.
LOCK_HOLDER_TEST = """
import subprocess, sys

HOLD = '''
import sys, time, psycopg
with psycopg.connect(sys.argv[1]) as conn:
    conn.execute("LOCK TABLE items IN ACCESS SHARE MODE")
    print("locked", flush=True)
    time.sleep(8)
'''

def test_leaves_a_lock(shoal_databases):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, shoal_databases["app"].url], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
"""


def test_a_lock_left_on_a_table_neither_fails_the_teardown_nor_leaves_the_schema_behind(
    tmp_path: Path, embedded: Server, embedded_databases: Databases
) -> None:
    database = embedded_databases.new("leftover")
    project = inner.write_project(
        tmp_path,
        {"app": {"url": embedded.url(database), "setup": "sql:schema.sql"}},
        {"schema.sql": "CREATE TABLE items (id int);\n", "test_lock.py": LOCK_HOLDER_TEST},
        shoal={"reports_dir": "reports"},
    )
    result = inner.run(project, "-n", "0", "--shoal-report")
    assert result.returncode == 0, result.output
    # The rename takes no lock on the tables; the reaper's drop waits out the session,
    # failing and trying again, and takes the schema once the lock is gone.
    assert "could not be dropped" not in result.stdout
    [path] = (project / "reports").glob("*.json")
    assert json.loads(path.read_text())["problems"] == []
    assert settled(embedded, database, timeout=90) == []
