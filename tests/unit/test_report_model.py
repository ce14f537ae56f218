"""The run report model, its atomic writer and its reader, on real files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shoal import naming
from shoal.report import (
    Outcome,
    ProvisioningTiming,
    ReportError,
    RunReport,
    Spread,
    TestResult,
    Versions,
    latest_report,
    list_reports,
    provisioning_stats,
    read_report,
    worker_usage,
    write_report,
)

STARTED = datetime(2026, 3, 1, 12, 0, 0, 500_000, tzinfo=UTC)
VERSIONS = Versions(python="3.11.7", pytest="9.2.0", shoal="0.1.0", xdist="3.8.0")


def result(
    nodeid: str,
    worker: str,
    start: float,
    call: float,
    *,
    setup: float = 0.0,
    teardown: float = 0.0,
    outcome: Outcome = "passed",
) -> TestResult:
    return TestResult(
        nodeid=nodeid,
        outcome=outcome,
        worker=worker,
        duration_s=call,
        setup_s=setup,
        teardown_s=teardown,
        start=start,
        stop=start + setup + call + teardown,
    )


def make_report(namespace: str = "p1t2r0000abcd", started: datetime = STARTED) -> RunReport:
    tests = (
        result("t.py::test_a", "gw0", 100.0, 2.0, setup=1.0, teardown=1.0),
        result("t.py::test_b", "gw0", 106.0, 2.0, outcome="failed"),
        result("t.py::test_c[x]", "gw1", 110.0, 0.5, setup=0.5, outcome="skipped"),
    )
    return RunReport(
        namespace=namespace,
        args=("-n", "2", "-o", "shoal_url=postgresql://app:s3cret@db.internal/app"),
        versions=VERSIONS,
        started=started,
        finished=started + timedelta(seconds=12),
        exit_status=1,
        tests=tests,
        workers=worker_usage(tests, 112.0),
        provisioning=(
            ProvisioningTiming(
                worker="gw0",
                database="app",
                slot_wait_s=0.1,
                create_s=0.2,
                setup_s=0.3,
                total_s=0.6,
            ),
            ProvisioningTiming(
                worker="gw1",
                database="app",
                slot_wait_s=0.3,
                create_s=0.2,
                setup_s=0.5,
                total_s=1.0,
            ),
        ),
    )


def test_write_read_round_trip(tmp_path: Path) -> None:
    report = make_report()
    directory = tmp_path / "nested" / "reports"  # created on demand
    path = write_report(report, directory)
    assert path.parent == directory
    assert naming.parse_report_filename(path.name) == (
        STARTED.replace(microsecond=0),
        report.namespace,
    )
    assert read_report(path) == report
    assert read_report(path).started == STARTED  # sub-second precision survives


def test_passwords_never_reach_the_file(tmp_path: Path) -> None:
    path = write_report(make_report(), tmp_path)
    text = path.read_text()
    assert "s3cret" not in text
    assert "postgresql://app:***@db.internal/app" in text


def test_atomic_write_leaves_only_the_report(tmp_path: Path) -> None:
    path = write_report(make_report(), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_failed_write_cleans_up_its_temporary_file(tmp_path: Path) -> None:
    report = make_report()
    # A directory where the report should go: the final rename fails after the write.
    (tmp_path / report.filename).mkdir()
    with pytest.raises(ReportError, match="cannot write the run report"):
        write_report(report, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [report.filename]


def test_listing_orders_by_precise_start_within_one_second(tmp_path: Path) -> None:
    second = STARTED.replace(microsecond=0)
    # Same second, and name order ("aaa" < "zzz") is the opposite of start order.
    late = write_report(make_report("aaa", second + timedelta(microseconds=900_000)), tmp_path)
    early = write_report(make_report("zzz", second + timedelta(microseconds=100_000)), tmp_path)
    before = write_report(make_report("mmm", second - timedelta(seconds=1)), tmp_path)
    assert late.name.split("_")[0] == early.name.split("_")[0]
    (tmp_path / "notes.json").write_text("{}")  # not a report name: ignored
    (tmp_path / ".20260301T120000Z_abc.json.x.tmp").write_text("")  # a writer's temporary

    listed = list_reports(tmp_path)
    assert [r.path for r in listed] == [before, early, late]
    assert [r.namespace for r in listed] == ["mmm", "zzz", "aaa"]
    latest = latest_report(tmp_path)
    assert latest is not None
    assert latest.path == late


def test_empty_or_missing_directory_has_no_reports(tmp_path: Path) -> None:
    assert list_reports(tmp_path) == []
    assert latest_report(tmp_path / "missing") is None


def test_reading_something_else_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "20260301T120000Z_abc.json"
    path.write_text('{"hello": "world"}')
    with pytest.raises(ReportError, match=r"20260301T120000Z_abc\.json is not a shoal run report"):
        read_report(path)
    with pytest.raises(ReportError, match="cannot read"):
        read_report(tmp_path / "missing.json")


def test_utilisation_math() -> None:
    tests = [
        result("a", "gw0", 100.0, 2.0, setup=1.0, teardown=1.0),  # busy 4
        result("b", "gw0", 106.0, 2.0),  # busy 2
        result("c", "gw10", 110.0, 1.0),
        result("d", "gw2", 111.0, 1.0),  # busy as long as its span: fully used
        result("e", "main", 111.5, 0.25),
    ]
    usage = {u.worker: u for u in worker_usage(tests, session_end=112.0)}
    assert [u.worker for u in worker_usage(tests, 112.0)] == ["gw0", "gw2", "gw10", "main"]
    gw0 = usage["gw0"]
    assert (gw0.tests, gw0.busy_s, gw0.idle_s, gw0.span_s) == (2, 6.0, 6.0, 12.0)
    assert gw0.utilisation == 0.5
    assert (usage["gw10"].busy_s, usage["gw10"].idle_s) == (1.0, 1.0)
    assert (usage["gw2"].idle_s, usage["gw2"].utilisation) == (0.0, 1.0)
    assert usage["main"].utilisation == 0.5


def test_idle_is_never_negative_when_busy_exceeds_the_span() -> None:
    # Rounding, or a session end taken before the last stop: clamp, do not go negative.
    (usage,) = worker_usage([result("a", "gw0", 100.0, 3.0)], session_end=102.0)
    assert usage.idle_s == 0.0
    assert usage.utilisation == 1.0


def test_summaries() -> None:
    report = make_report()
    assert report.outcome_counts() == {"passed": 1, "failed": 1, "skipped": 1}
    assert [t.nodeid for t in report.slowest(2)] == ["t.py::test_a", "t.py::test_b"]
    assert report.duration_s == 12.0
    (app,) = provisioning_stats(report.provisioning)
    assert app.database == "app"
    assert app.schemas == 2
    assert app.total == Spread(p50=0.8, max=1.0)
    assert app.slot_wait == Spread(p50=0.2, max=0.3)


def test_a_report_needs_a_real_namespace() -> None:
    with pytest.raises(ValueError, match="not a shoal namespace"):
        make_report("Not_A_Namespace")
