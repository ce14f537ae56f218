"""`shoal run --shard` input checks and `shoal report --merge` of shard reports."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from shoal.cli import cli
from shoal.cli.run import _shard_args
from shoal.report import RunReport, TestResult, Versions, write_report
from tests.cli.conftest import Project

T0 = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--shard", "3/2"], {}, "Error: --shard = '3/2' (from the command line): expected I/N"),
        (["--shard", "0/2"], {}, "Error: --shard = '0/2' (from the command line): expected I/N"),
        (["--shard", "a/b"], {}, "Error: --shard = 'a/b' (from the command line): expected I/N"),
        ([], {"SHOAL_SHARD": "1/0"}, "Error: SHOAL_SHARD = '1/0' (from the environment): "),
    ],
)
def test_a_bad_shard_stops_shoal_run_before_anything_starts(
    project: Project, args: list[str], env: dict[str, str], expected: str
) -> None:
    project({})
    result = CliRunner().invoke(cli, ["run", "--no-sweep", *args], env=env)
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output


def test_the_flag_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_SHARD", "1/2")
    assert _shard_args("2/3") == ["--shoal-shard", "2/3"]
    assert _shard_args(None) == ["--shoal-shard", "1/2"]
    monkeypatch.setenv("SHOAL_SHARD", "")
    assert _shard_args(None) == []


def shard_report(index: int, total: int, seconds: list[float], wall: float) -> RunReport:
    base = T0.timestamp()
    tests = tuple(
        TestResult(
            nodeid=f"tests/test_{index}.py::test_{i}",
            outcome="failed" if s == 0 else "passed",
            worker="main",
            duration_s=s,
            start=base,
            stop=base + s,
        )
        for i, s in enumerate(seconds)
    )
    return RunReport(
        namespace=f"p{index}t{int(base)}r0000abcd",
        args=("--shoal-shard", f"{index}/{total}"),
        versions=Versions(python="3", pytest="9", shoal="0"),
        started=T0,
        finished=T0 + timedelta(seconds=wall),
        exit_status=0,
        tests=tests,
        worker_count=1,
        shard=f"{index}/{total}",
    )


def test_merge_of_three_shards_prints_the_fleet_distance(tmp_path: Path) -> None:
    for index, seconds, wall in [(1, [4.0, 1.0], 6.0), (2, [3.0, 2.0, 0.0], 5.5), (3, [5.0], 5.0)]:
        write_report(shard_report(index, 3, seconds, wall), tmp_path)
    result = CliRunner().invoke(cli, ["report", "--merge", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "3 shards merged: 5 passed, 1 failed" in result.output
    assert (
        "fleet distance to the limit D=1.20: longest shard 6.00s, bound 5.00s = max(longest "
        "test 5.00s, test time 15.00s / 3 worker slots)"
    ) in result.output
    for label in ("1/3", "2/3", "3/3"):
        assert label in result.output

    as_json = json.loads(
        CliRunner().invoke(cli, ["report", "--merge", str(tmp_path), "--json"]).output
    )
    assert [s["shard"] for s in as_json["shards"]] == ["1/3", "2/3", "3/3"]
    assert [s["wall_s"] for s in as_json["shards"]] == [6.0, 5.5, 5.0]
    assert as_json["fleet"]["d"] == pytest.approx(1.2)
    assert as_json["outcomes"] == {"passed": 5, "failed": 1}
    assert as_json["slowest"][0]["nodeid"] == "tests/test_3.py::test_0"
    assert as_json["missing"] == []


def test_merge_says_which_shard_is_missing(tmp_path: Path) -> None:
    write_report(shard_report(1, 2, [1.0], 1.5), tmp_path)
    result = CliRunner().invoke(cli, ["report", "--merge", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "shard 2/2: no report" in result.output
