"""`shoal report` on reports written by the writer and by a real inner run."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from shoal.cli.report import report_command
from shoal.report import (
    ProvisioningTiming,
    RunReport,
    TestResult,
    Versions,
    WorkerStartup,
    startup_parts,
    worker_usage,
    write_report,
)
from shoal.schedule import distance
from tests.plugin import inner

STARTED = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def sample(namespace: str, started: datetime = STARTED, slow: int = 12) -> RunReport:
    """``slow`` passing tests on two workers, test_<i> taking i/10 s, plus one failure."""
    base = started.timestamp()
    tests = [
        TestResult(
            nodeid=f"tests/test_mod.py::test_{i}",
            outcome="passed",
            worker=f"gw{i % 2}",
            duration_s=i / 10,
            setup_s=0.01,
            teardown_s=0.01,
            start=base + i,
            stop=base + i + 1,
        )
        for i in range(slow)
    ]
    tests.append(
        TestResult(
            nodeid="tests/test_mod.py::test_broken[a-b]",
            outcome="failed",
            worker="gw0",
            duration_s=0.05,
            start=base,
            stop=base + 0.05,
        )
    )
    finished = started + timedelta(seconds=slow + 2)
    return RunReport(
        namespace=namespace,
        args=("-n", "2"),
        versions=Versions(python="3.11.7", pytest="9.2.0", shoal="0.1.0", xdist="3.8.0"),
        started=started,
        finished=finished,
        exit_status=1,
        tests=tuple(tests),
        workers=worker_usage(tests, finished.timestamp()),
        provisioning=tuple(
            ProvisioningTiming(
                worker=w,
                database="platform",
                slot_wait_s=0.1,
                create_s=0.01,
                setup_s=t,
                total_s=t + 0.11,
            )
            for w, t in (("gw0", 0.5), ("gw1", 0.9))
        ),
        # gw0's first test starts at base, gw1's at base + 1.
        startup=(
            WorkerStartup(
                worker="gw0",
                started=base - 2.0,
                loaded=base - 1.5,
                shoal_s=0.1,
                collection_start=base - 1.2,
                collection_end=base - 0.9,
            ),
            WorkerStartup(
                worker="gw1",
                started=base - 1.0,
                loaded=base - 0.6,
                shoal_s=0.05,
                collection_start=base - 0.5,
                collection_end=base - 0.3,
            ),
        ),
    )


def invoke(*args: str) -> Result:
    return CliRunner().invoke(report_command, list(args))


def test_human_summary(tmp_path: Path) -> None:
    path = write_report(sample("human"), tmp_path)
    result = invoke(str(path))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "human" in out
    assert "12 passed, 1 failed" in out
    assert "10 slowest tests" in out
    assert "tests/test_mod.py::test_11" in out  # the slowest
    assert "tests/test_mod.py::test_1 " not in out  # 11th slowest: not shown
    assert "worker utilisation" in out
    assert "gw0" in out
    assert "gw1" in out
    assert "%" in out
    assert "provisioning per database" in out
    assert "platform" in out
    assert "0.81/1.01" in out  # total p50/max across the two workers (0.61, 1.01)


def test_start_up_is_split_per_worker(tmp_path: Path) -> None:
    run = sample("startup")
    gw0, gw1 = startup_parts(run)
    assert (gw0.worker, gw1.worker) == ("gw0", "gw1")
    figures = (gw0.imports_s, gw0.shoal_s, gw0.collection_s, gw0.other_s, gw0.provisioning_s)
    assert figures == pytest.approx((0.5, 0.1, 0.3, 1.1, 0.61))
    assert gw1.other_s == pytest.approx(1.0 + 1.0 - 0.4 - 0.05 - 0.2)
    assert gw1.total_s == pytest.approx(2.0 + 1.01)  # creation to first test, plus provisioning

    result = invoke(str(write_report(run, tmp_path)))
    assert result.exit_code == 0, result.output
    table = result.output.split("start-up per worker", 1)[1]
    row = next(line for line in table.splitlines() if line.strip("│ ").startswith("gw0 "))
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    assert cells == ["gw0", "0.50", "0.10", "0.30", "1.10", "0.61", "2.61"]


def test_a_report_without_start_up_marks_shows_no_start_up_table(tmp_path: Path) -> None:
    run = sample("old").model_copy(update={"startup": ()})
    result = invoke(str(write_report(run, tmp_path)))
    assert result.exit_code == 0, result.output
    assert "start-up" not in result.output


def test_json_round_trips(tmp_path: Path) -> None:
    report = sample("jsonout")
    path = write_report(report, tmp_path)
    result = invoke(str(path), "--json")
    assert result.exit_code == 0, result.output
    assert RunReport.model_validate(json.loads(result.output)) == report


def test_latest_is_the_default_and_all_lists_every_report(tmp_path: Path) -> None:
    write_report(sample("older"), tmp_path)
    write_report(sample("newer", STARTED + timedelta(minutes=5), slow=3), tmp_path)

    for args in ([], ["--latest"]):
        result = invoke("--dir", str(tmp_path), *args)
        assert result.exit_code == 0, result.output
        assert "newer" in result.output
        assert "older" not in result.output

    result = invoke("--dir", str(tmp_path), "--all")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2
    assert "older" in lines[0]
    assert "12 passed, 1 failed" in lines[0]
    assert "newer" in lines[1]
    assert "2026-03-01 12:05:00" in lines[1]

    result = invoke("--dir", str(tmp_path), "--all", "--json")
    assert result.exit_code == 0, result.output
    assert [r["namespace"] for r in json.loads(result.output)] == ["older", "newer"]


def test_all_skips_a_broken_file_and_says_so(tmp_path: Path) -> None:
    write_report(sample("good"), tmp_path)
    (tmp_path / "20260301T130000Z_broken.json").write_text("not json")
    result = invoke("--dir", str(tmp_path), "--all")
    assert result.exit_code == 0, result.output
    assert "good" in result.stdout
    assert "skipped:" in result.stderr
    assert "20260301T130000Z_broken.json" in result.stderr


def test_no_reports_says_how_to_make_one_and_exits_1(tmp_path: Path) -> None:
    result = invoke("--dir", str(tmp_path / "nothing-here"))
    assert result.exit_code == 1
    assert f"No reports in {tmp_path / 'nothing-here'}: `shoal run` writes one" in result.output
    result = invoke("--dir", str(tmp_path), "--all", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == []


@pytest.mark.parametrize("kind", ["missing", "not-a-report", "directory"])
def test_bad_path_is_a_usage_error_naming_it(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "20260301T120000Z_abc.json"
    if kind == "not-a-report":
        path.write_text('{"some": "other json"}')
    elif kind == "directory":
        path.mkdir()
    result = invoke(str(path))
    assert result.exit_code == 2
    assert str(path) in result.output
    assert "Traceback" not in result.output
    expected = {
        "missing": "no such file",
        "not-a-report": "is not a shoal run report",
        "directory": "is a directory",
    }[kind]
    assert expected in result.output


def test_path_and_all_together_is_a_usage_error(tmp_path: Path) -> None:
    path = write_report(sample("both"), tmp_path)
    result = invoke(str(path), "--all")
    assert result.exit_code == 2
    assert "at most one of PATH, --latest and --all" in result.output


def test_default_directory_comes_from_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.shoal]\nreports_dir = "var/reports"\n')
    write_report(sample("fromproject"), tmp_path / "var" / "reports")
    (tmp_path / "sub").mkdir()
    monkeypatch.delenv("SHOAL_REPORTS_DIR", raising=False)
    monkeypatch.chdir(tmp_path / "sub")  # resolved against the project root, not the cwd
    result = invoke()
    assert result.exit_code == 0, result.output
    assert "fromproject" in result.output


def test_report_of_a_real_run(tmp_path: Path) -> None:
    suite = """
import time

def test_slow():
    time.sleep(0.3)

def test_quick():
    pass

def test_other():
    pass
"""
    project = inner.write_project(tmp_path, {}, {"test_real.py": suite}, shoal={"reports_dir": "r"})
    run = inner.run(project, "-n", "2", "--shoal-report")
    assert run.returncode == 0, run.output

    result = invoke("--dir", str(project / "r"))
    assert result.exit_code == 0, result.output
    assert "3 passed" in result.output
    assert "slowest tests" in result.output
    slowest = result.output.index("test_real.py::test_slow")
    assert slowest < result.output.index("test_real.py::test_quick")
    assert "worker utilisation" in result.output
    assert "distance to the limit D=" in result.output

    result = invoke("--dir", str(project / "r"), "--latest", "--json")
    data = json.loads(result.output)
    assert {t["worker"] for t in data["tests"]} <= {"gw0", "gw1"}
    assert len(data["tests"]) == 3


def test_distance_to_the_limit_is_shown(tmp_path: Path) -> None:
    report = sample("withd")
    report = report.model_copy(update={"worker_count": 2, "distance": distance(report)})
    assert report.distance is not None
    path = write_report(report, tmp_path)
    result = invoke(str(path))
    assert result.exit_code == 0, result.output
    assert f"distance to the limit D={report.distance.d:.2f}" in result.output
    assert "start-up" in result.output
    assert "imbalance" in result.output

    # An older report (no scheduling figures) still reads, and shows no D.
    write_report(sample("nod", STARTED - timedelta(minutes=1)), tmp_path)
    result = invoke("--dir", str(tmp_path), "--all")
    assert result.exit_code == 0, result.output
    older, newer = result.output.strip().splitlines()
    assert " D " not in older
    assert newer.endswith(f"D {report.distance.d:.2f}")
