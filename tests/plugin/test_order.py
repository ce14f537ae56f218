"""``--shoal-order``: real inner runs, ordered by the history earlier runs' reports left.

The inner tests record, per worker and in the order they ran, which test they were; a
worker's first test is the head of the block xdist gave it, which is what the order
decides. No databases are configured, so nothing is provisioned.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from shoal import schedule
from shoal.report import list_reports, read_report
from tests.plugin import inner

SKEWED = """
import os
import time

import pytest

from recorder import record


def run(name, seconds):
    record(test=name, worker=os.environ.get("PYTEST_XDIST_WORKER", "main"))
    time.sleep(seconds)


@pytest.mark.parametrize("n", range(10))
def test_short(n):
    run(f"short-{n}", 0.01)


def test_long_a():
    run("long_a", 0.4)


def test_long_b():
    run("long_b", 0.3)
"""

# Run only when INJECT is set: worker gw1 writes a report with inverted durations into
# the reports directory just before it orders its collection, as a concurrent run
# finishing at that moment would. A worker that re-read the history would now disagree
# with gw0, and xdist would abort the run.
INJECTING_CONFTEST = """
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shoal.report import RunReport, TestResult, Versions, write_report


def pytest_collection_modifyitems(items):
    if not os.environ.get("INJECT") or os.environ.get("PYTEST_XDIST_WORKER") != "gw1":
        return
    started = datetime.now(UTC)
    now = started.timestamp()
    tests = tuple(
        TestResult(nodeid=item.nodeid, outcome="passed", worker="gw0",
                   duration_s=float(100 - i), start=now, stop=now + 1)
        for i, item in enumerate(items)
    )
    report = RunReport(
        namespace="injected", args=(), versions=Versions(python="3", pytest="8", shoal="0"),
        started=started, finished=started + timedelta(seconds=1), exit_status=0, tests=tests,
    )
    write_report(report, Path("reports"))
"""

LONG = {"long_a", "long_b"}


def first_tests(project: Path) -> dict[str, str]:
    """Worker → the first test it ran, from the records of the last run."""
    firsts = {}
    for path in sorted((project / ".records").glob("*.jsonl")):
        records = [json.loads(line) for line in path.read_text().splitlines() if line]
        firsts[records[0]["worker"]] = records[0]["test"]
    return firsts


def run(project: Path, *args: str, env: dict[str, str] | None = None) -> inner.InnerRun:
    shutil.rmtree(project / ".records", ignore_errors=True)
    result = inner.run(project, *args, env=env)
    assert result.returncode == 0, result.output
    assert "Different tests collected" not in result.output
    return result


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A skewed suite (the long tests collected last) with one report of history."""
    root = inner.write_project(
        tmp_path,
        {},
        {"test_skewed.py": SKEWED, "conftest.py": INJECTING_CONFTEST},
        shoal={"reports_dir": "reports"},
    )
    run(root, "-n", "0", "--shoal-report")
    assert len(list_reports(root / "reports")) == 1
    return root


def test_worksteal_runs_the_long_tests_first_on_every_worker(project: Path) -> None:
    result = run(project, "-n", "2", "--dist", "worksteal", "--shoal-report")
    assert "shoal: order: longest first by duration history (12 tests from the last 1 reports)" in (
        result.stdout
    )
    # Collection order would start the workers on short-0 and short-6.
    firsts = first_tests(project)
    assert set(firsts) == {"gw0", "gw1"}
    assert set(firsts.values()) == LONG

    # The run's own report carries the distance to the limit, also printed.
    reports = list_reports(project / "reports")
    assert len(reports) == 2
    report = read_report(reports[-1].path)
    assert report.worker_count == 2
    assert report.distance is not None
    assert report.distance.workers == 2
    assert report.distance.d >= 1.0
    assert report.distance.bound_s >= 0.4
    assert f"shoal: distance to the limit D={report.distance.d:.2f}" in result.stdout


def test_workers_agree_when_a_report_appears_mid_collection(project: Path) -> None:
    result = run(project, "-n", "2", "--dist", "worksteal", env={"INJECT": "1"})
    # The injected report is there, and was ignored: the order still comes from the first.
    assert {r.namespace for r in list_reports(project / "reports")} >= {"injected"}
    assert set(first_tests(project).values()) == LONG
    assert "passed" in result.stdout


def test_load_is_ordered_too(project: Path) -> None:
    run(project, "-n", "2", "--dist", "load")
    assert set(first_tests(project).values()) == LONG


def test_order_none_keeps_the_collection_order(project: Path) -> None:
    result = run(project, "-n", "2", "--dist", "worksteal", "--shoal-order=none")
    assert "shoal: order" not in result.stdout
    assert set(first_tests(project).values()) == {"short-0", "short-6"}


def test_other_dist_modes_are_left_alone(project: Path) -> None:
    result = run(project, "-n", "2", "--dist", "loadfile")
    assert "shoal: order" not in result.stdout
    # One file: loadfile gives it whole to one worker, in collection order.
    assert list(first_tests(project).values()) == ["short-0"]


def test_without_history_the_run_works_in_collection_order(tmp_path: Path) -> None:
    project = inner.write_project(
        tmp_path, {}, {"test_skewed.py": SKEWED}, shoal={"reports_dir": "reports"}
    )
    result = run(project, "-n", "2", "--dist", "worksteal", "--shoal-report")
    assert "shoal: order: no duration history yet, collection order kept" in result.stdout
    assert set(first_tests(project).values()) == {"short-0", "short-6"}
    # That run's report is the next run's history.
    run(project, "-n", "2", "--dist", "worksteal")
    assert set(first_tests(project).values()) == LONG


def test_each_worker_runs_its_block_of_schedule_order(project: Path) -> None:
    (entry,) = list_reports(project / "reports")
    history = schedule.durations([read_report(entry.path)])
    names = {f"test_skewed.py::test_short[{n}]": f"short-{n}" for n in range(10)}
    names |= {f"test_skewed.py::test_{x}": x for x in ("long_a", "long_b")}
    ordered = [names[nodeid] for nodeid in schedule.order(list(names), history, workers=2)]
    blocks = [ordered[:6], ordered[6:]]
    assert [block[0] for block in blocks] == ["long_a", "long_b"]

    run(project, "-n", "2", "--dist", "worksteal")
    ran = {}
    for path in (project / ".records").glob("gw*.jsonl"):
        ran[path.stem] = [json.loads(line)["test"] for line in path.read_text().splitlines()]
    assert sorted(t for tests in ran.values() for t in tests) == sorted(ordered)
    for tests in ran.values():
        # A worker runs its own block in order. A steal takes tests from the end of a
        # queue (and never its first two); xdist may hand some of them back to the same
        # worker, after everything still queued, so they still come in block order.
        (own,) = [block for block in blocks if block[0] == tests[0]]
        assert tests[:2] == own[:2], ran
        mine = [t for t in tests if t in own]
        assert mine == sorted(mine, key=own.index), ran
