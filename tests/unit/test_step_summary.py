"""The Markdown run summary for GITHUB_STEP_SUMMARY, and appending it to a real file."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.report import ReportError, RunReport, TestResult, write_report
from shoal.schedule import distance
from shoal.step_summary import append_step_summary, code, markdown
from tests.cli.test_report import sample


def with_distance(namespace: str = "summary") -> RunReport:
    report = sample(namespace)
    return report.model_copy(update={"worker_count": 2, "distance": distance(report)})


def test_summary_has_outcomes_d_failures_and_the_slowest_tests() -> None:
    report = with_distance()
    text = markdown(report)
    assert text.startswith("### ❌ shoal: 12 passed, 1 failed in 14.0s (exit 1)\n")
    assert "Namespace `summary`, 2 workers." in text
    assert report.distance is not None
    assert f"**D = {report.distance.d:.2f}**" in text
    assert "start-up" in text
    assert "imbalance" in text
    assert "- `tests/test_mod.py::test_broken[a-b]` (failed, gw0)" in text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) == 5
    assert rows[0].startswith("| `tests/test_mod.py::test_11` | passed | `gw1` |")
    assert "Left behind" not in text


def test_an_old_report_without_figures_still_summarises() -> None:
    text = markdown(sample("older"))
    assert "D =" not in text
    assert "12 passed, 1 failed" in text


def test_kept_schemas_and_problems_are_listed() -> None:
    report = sample("kept").model_copy(
        update={
            "kept": ("app: schema test_kept_gw0 — psql 'postgresql://u:***@h/db'",),
            "problems": ("drop of test_kept_gw1 failed: lock timeout",),
        }
    )
    text = markdown(report)
    assert "**Left behind**" in text
    assert "- kept: `app: schema test_kept_gw0 — psql 'postgresql://u:***@h/db'`" in text
    assert "- `drop of test_kept_gw1 failed: lock timeout`" in text


@pytest.mark.parametrize(
    ("text", "in_table", "expected"),
    [
        ("plain", False, "`plain`"),
        ("a`b", False, "``a`b``"),
        ("`edge", False, "`` `edge ``"),
        ("x|y", True, "`x\\|y`"),
        ("x|y", False, "`x|y`"),
        ("two\nlines", False, "`two lines`"),
    ],
)
def test_code_spans_survive_any_content(text: str, in_table: bool, expected: str) -> None:
    assert code(text, in_table) == expected


def test_a_hostile_node_id_stays_inside_its_cell() -> None:
    report = sample("hostile")
    evil = TestResult(
        nodeid="t.py::test[<script>|`x`]",
        outcome="failed",
        worker="gw0",
        duration_s=99.0,
        start=report.tests[0].start,
        stop=report.tests[0].start + 99,
    )
    text = markdown(report.model_copy(update={"tests": (*report.tests, evil)}))
    row = next(line for line in text.splitlines() if "<script>" in line and line.startswith("|"))
    assert row.startswith("| ``t.py::test[<script>\\|`x`]`` | failed |")
    assert row.count(" | ") == 3  # four cells: the escaped pipe does not make a fifth


def test_append_does_nothing_off_ci(tmp_path: Path) -> None:
    assert append_step_summary(sample("off"), {}) is None
    assert append_step_summary(sample("off"), {"GITHUB_STEP_SUMMARY": ""}) is None
    assert list(tmp_path.iterdir()) == []


def test_append_adds_to_what_earlier_steps_wrote(tmp_path: Path) -> None:
    summary = tmp_path / "step_summary.md"
    summary.write_text("# Build\nearlier step")
    path = write_report(with_distance("fromfile"), tmp_path / "reports")
    assert append_step_summary(path, {"GITHUB_STEP_SUMMARY": str(summary)}) == summary
    append_step_summary(with_distance("second"), {"GITHUB_STEP_SUMMARY": str(summary)})
    text = summary.read_text()
    assert text.startswith("# Build\nearlier step\n\n### ❌ shoal: 12 passed")
    assert text.index("`fromfile`") < text.index("`second`")


def test_append_errors_name_the_path(tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "summary.md"
    with pytest.raises(ReportError, match=r"missing-dir/summary\.md \(GITHUB_STEP_SUMMARY\)"):
        append_step_summary(sample("err"), {"GITHUB_STEP_SUMMARY": str(target)})
    with pytest.raises(ReportError, match=r"not-a-report\.json"):
        append_step_summary(
            tmp_path / "not-a-report.json", {"GITHUB_STEP_SUMMARY": str(tmp_path / "s.md")}
        )
