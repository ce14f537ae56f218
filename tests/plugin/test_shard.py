"""``--shoal-shard I/N``: real inner runs of every shard at once, as separate machines would.

Each inner test records which run (shard) and worker ran it; the shards' own reports say
the same from the plugin's side. No databases are configured, so nothing is provisioned.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from shoal.cli.report import report_command
from shoal.report import list_reports, read_report
from tests.plugin import inner

RECORD = """
import json, os, pathlib


def record(**data):
    out = pathlib.Path(os.environ["RECORD_DIR"])
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"{os.environ.get('SHARD_RUN', 'whole')}_{worker}.jsonl"
    with open(out / name, "a") as fh:
        fh.write(json.dumps({"run": os.environ.get("SHARD_RUN"), "worker": worker, **data}) + "\\n")
"""

LONG = """
import time

from shardrec import record


def test_long_a():
    record(test="long_a")
    time.sleep(0.3)


def test_long_b():
    record(test="long_b")
    time.sleep(0.25)


def test_long_c():
    record(test="long_c")
    time.sleep(0.2)
"""

SHORT = """
import time

import pytest

from shardrec import record


@pytest.mark.parametrize("n", range(12))
def test_short(n):
    record(test=f"short-{n}")
    time.sleep(0.01)
"""

# Its fixture is set up once per process that runs any of its tests.
MODULE = """
import pytest

from shardrec import record


@pytest.fixture(scope="module")
def resource():
    record(fixture="resource")
    return 1


@pytest.mark.parametrize("n", range(3))
def test_uses(resource, n):
    record(test=f"uses-{n}")
"""

ALL = 3 + 12 + 3
LONGS = {"long_a", "long_b", "long_c"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return inner.write_project(
        tmp_path,
        {},
        {
            "shardrec.py": RECORD,
            "test_slow.py": LONG,  # collected last, as slow modules often are
            "test_short.py": SHORT,
            "test_module.py": MODULE,
        },
    )


def with_history(project: Path) -> Path:
    """One whole run's report in ``hist``: the history every shard is given."""
    history = project / "hist"
    result = inner.run(
        project, "-n", "0", "--shoal-report", env={"SHOAL_REPORTS_DIR": str(history)}
    )
    assert result.returncode == 0, result.output
    assert len(list_reports(history)) == 1
    return history


def run_shards(project: Path, history: Path, *args: str, shards: int = 3) -> list[inner.InnerRun]:
    """Every shard at once, each in its own process, reports into ``out``."""
    procs: list[subprocess.Popen[str]] = []
    for i in range(1, shards + 1):
        env = {"SHOAL_REPORTS_DIR": str(project / "out"), "SHARD_RUN": str(i)}
        argv = ["--shoal-report", "--shoal-shard", f"{i}/{shards}", "--shoal-history", str(history)]
        procs.append(inner.start(project, *args, *argv, env=env))
    results = [inner.finish(project, proc) for proc in procs]
    for result in results:
        assert result.returncode == 0, result.output
        assert "Different tests collected" not in result.output
    return results


def records(project: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted((project / ".records").glob("*.jsonl")):
        found += [json.loads(line) for line in path.read_text().splitlines() if line]
    return found


def ran_by_shard(project: Path) -> dict[str, list[str]]:
    by_run: dict[str, list[str]] = {}
    for entry in records(project):
        if "test" in entry and entry["run"] is not None:  # not the history run
            by_run.setdefault(entry["run"], []).append(entry["test"])
    return by_run


def assert_every_test_once(project: Path, shards: int = 3) -> dict[str, list[str]]:
    by_run = ran_by_shard(project)
    ran = [t for tests in by_run.values() for t in tests]
    assert len(ran) == ALL, by_run
    assert len(set(ran)) == ALL, by_run  # none twice
    # The reports agree, and record the shard each ran.
    reports = [read_report(e.path) for e in list_reports(project / "out")]
    assert sorted(r.shard or "" for r in reports) == [f"{i}/{shards}" for i in range(1, shards + 1)]
    nodeids = [t.nodeid for r in reports for t in r.tests]
    assert len(nodeids) == len(set(nodeids)) == ALL
    return by_run


def digests(results: list[inner.InnerRun]) -> set[str]:
    lines = [line for r in results for line in r.stdout.splitlines() if "partition digest" in line]
    assert len(lines) == len(results), [r.stdout for r in results]
    return {line.rsplit(" ", 1)[-1] for line in lines}


def test_three_shards_at_once_run_every_test_once_and_finish_together(project: Path) -> None:
    history = with_history(project)
    results = run_shards(project, history, "-n", "0")
    by_run = assert_every_test_once(project)
    assert len(digests(results)) == 1  # every machine split from the same numbers
    assert "by duration history (18 tests from 1 reports" in results[0].stdout
    # Longest first into the shard that ends earliest: one long test per shard.
    assert [len(LONGS & set(tests)) for _, tests in sorted(by_run.items())] == [1, 1, 1]
    # The module whose tests share a module-scoped fixture went to one shard, whole:
    # its fixture was set up once in all.
    fixtures = [e for e in records(project) if e.get("fixture") and e["run"] is not None]
    assert len(fixtures) == 1
    holder = fixtures[0]["run"]
    assert {f"uses-{n}" for n in range(3)} <= set(by_run[holder])

    # The merge of the three reports: the fleet's distance to the limit.
    merged = CliRunner().invoke(report_command, ["--merge", str(project / "out")])
    assert merged.exit_code == 0, merged.output
    assert "3 shards merged: 18 passed" in merged.output
    assert "fleet distance to the limit D=" in merged.output
    assert "ran in more than one shard" not in merged.output
    as_json = CliRunner().invoke(report_command, ["--merge", str(project / "out"), "--json"])
    fleet = json.loads(as_json.output)["fleet"]
    assert fleet["slots"] == 3
    assert fleet["d"] >= 1.0
    assert fleet["bound_s"] >= 0.3


def test_with_xdist_every_worker_keeps_the_same_shard_and_the_long_test_goes_first(
    project: Path,
) -> None:
    history = with_history(project)
    # Two shards of two workers: as much as two cores run at once without crawling.
    run_shards(project, history, "-n", "2", "--dist", "worksteal", shards=2)
    by_run = assert_every_test_once(project, shards=2)
    # Inside a shard the duration order still applies: the shard's long test is the
    # first test of one of its workers.
    firsts: dict[str, set[str]] = {}
    seen: set[tuple[str, str]] = set()
    for entry in records(project):  # each file in the order its worker ran the tests
        key = (entry["run"], entry["worker"])
        if "test" in entry and entry["run"] is not None and key not in seen:
            seen.add(key)
            firsts.setdefault(entry["run"], set()).add(entry["test"])
    for run, tests in by_run.items():
        assert LONGS & set(tests) <= firsts[run], (run, tests)


def test_without_history_the_split_is_stable_and_complete(project: Path) -> None:
    empty = project / "no-history"
    empty.mkdir()
    results = run_shards(project, empty, "-n", "0")
    by_run = assert_every_test_once(project)
    assert "no duration history" in results[0].stdout
    assert len(digests(results)) == 1
    assert sorted(len(tests) for tests in by_run.values()) == [6, 6, 6]
    # --co lists what the shard runs (and starts nothing).
    listed = inner.run(project, "--co", "-q", "--shoal-shard", "2/3", "--shoal-history", str(empty))
    assert listed.returncode == 0, listed.output
    reports = [read_report(e.path) for e in list_reports(project / "out")]
    (second,) = [r for r in reports if r.shard == "2/3"]
    assert {line for line in listed.stdout.splitlines() if "::" in line} == {
        t.nodeid for t in second.tests
    }


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--shoal-shard", "3/2"], {}, "--shoal-shard = '3/2' (from the command line): "),
        ([], {"SHOAL_SHARD": "a/b"}, "SHOAL_SHARD = 'a/b' (from the environment): expected I/N"),
        (["-n", "2", "--shoal-shard", "1/0"], {}, "--shoal-shard = '1/0' (from the command line)"),
    ],
)
def test_a_bad_shard_is_a_usage_error(
    project: Path, args: list[str], env: dict[str, str], expected: str
) -> None:
    result = inner.run(project, *args, env=env)
    assert result.returncode == 4, result.output
    assert f"ERROR: shoal: {expected}" in result.output
    assert "Traceback" not in result.output
