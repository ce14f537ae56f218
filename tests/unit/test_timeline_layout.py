"""The timeline's geometry: lanes, spans and where provisioning goes, from made-up reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shoal.report import ProvisioningTiming, RunReport, TestResult, Versions
from shoal.timeline.layout import layout

STARTED = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
T0 = STARTED.timestamp()


def result(nodeid: str, worker: str, start: float, call: float, setup: float = 0.0) -> TestResult:
    return TestResult(
        nodeid=nodeid,
        outcome="passed",
        worker=worker,
        duration_s=call,
        setup_s=setup,
        start=T0 + start,
        stop=T0 + start + setup + call,
    )


def report(
    tests: list[TestResult],
    provisioning: tuple[ProvisioningTiming, ...] = (),
    finished: float = 10.0,
    exited: float | None = None,
) -> RunReport:
    return RunReport(
        namespace="p1t2r0000abcd",
        args=(),
        versions=Versions(python="3.11", pytest="9", shoal="0"),
        started=STARTED,
        finished=STARTED + timedelta(seconds=finished),
        exited=None if exited is None else STARTED + timedelta(seconds=exited),
        exit_status=0,
        tests=tuple(tests),
        provisioning=provisioning,
    )


def timing(
    worker: str, database: str, total: float, start: float | None = None
) -> ProvisioningTiming:
    return ProvisioningTiming(
        worker=worker,
        database=database,
        slot_wait_s=0.0,
        create_s=0.1,
        setup_s=total - 0.1,
        total_s=total,
        start=None if start is None else T0 + start,
    )


def spans(run: RunReport, worker: str, kind: str) -> list[tuple[float, float]]:
    (lane,) = [lane for lane in layout(run).lanes if lane.worker == worker]
    return [(round(s.start - T0, 6), round(s.end - T0, 6)) for s in lane.spans if s.kind == kind]


def test_one_lane_per_worker_in_worker_order_with_its_tests_in_time_order() -> None:
    tests = [
        result("t::b", "gw10", 2.0, 1.0),
        result("t::a", "gw2", 1.0, 1.0),
        result("t::c", "gw2", 0.5, 0.2),
        result("t::d", "main", 0.5, 0.2),
    ]
    run = layout(report(tests))
    assert [lane.worker for lane in run.lanes] == ["gw2", "gw10", "main"]
    assert [t.nodeid for t in run.lanes[0].tests] == ["t::c", "t::a"]
    assert run.test_count == 4
    assert run.last_test_end == pytest.approx(T0 + 3.0)


def test_startup_idle_waiting_and_the_common_end_of_the_run() -> None:
    tests = [
        result("t::a", "gw0", 1.0, 1.0),  # 1..2
        result("t::b", "gw0", 3.0, 1.0),  # idle 2..3, then 3..4
        result("t::c", "gw1", 0.5, 5.5),  # the last test ends at 6
    ]
    run = report(tests, finished=7.0, exited=7.5)
    assert spans(run, "gw0", "startup") == [(0.0, 1.0)]
    assert spans(run, "gw0", "idle") == [(2.0, 3.0)]
    assert spans(run, "gw0", "waiting") == [(4.0, 6.0)]
    assert spans(run, "gw1", "waiting") == []  # it ran the last test
    for worker in ("gw0", "gw1"):
        assert spans(run, worker, "teardown") == [(6.0, 7.0)]
        assert spans(run, worker, "after") == [(7.0, 7.5)]
    lanes = {lane.worker: lane for lane in layout(run).lanes}
    assert lanes["gw0"].busy_s == pytest.approx(2.0)
    assert lanes["gw0"].idle_s == pytest.approx(1.0)
    assert layout(run).end == pytest.approx(T0 + 7.5)


def test_without_an_exit_stamp_there_is_nothing_after_the_report() -> None:
    run = report([result("t::a", "gw0", 1.0, 1.0)], finished=3.0)
    assert spans(run, "gw0", "after") == []
    assert layout(run).end == pytest.approx(T0 + 3.0)


def test_gaps_shorter_than_the_threshold_get_no_span_but_still_count() -> None:
    tests = [result("t::a", "gw0", 0.0, 1.0), result("t::b", "gw0", 1.001, 1.0)]
    run = report(tests)
    (lane,) = layout(run, min_gap_s=0.01).lanes
    assert lane.spans_of("idle") == []
    assert lane.idle_s == pytest.approx(0.001, abs=1e-6)
    (lane,) = layout(run).lanes
    assert len(lane.spans_of("idle")) == 1


def test_provisioning_goes_into_the_first_setup_that_can_hold_it() -> None:
    # The first test asked for no shoal fixture; the second provisioned both databases.
    tests = [result("t::plain", "gw0", 0.5, 0.1), result("t::db", "gw0", 1.0, 0.1, setup=1.5)]
    run = report(tests, provisioning=(timing("gw0", "platform", 1.0), timing("gw0", "tenant", 0.5)))
    assert spans(run, "gw0", "provisioning") == [(1.0, 2.0), (2.0, 2.5)]
    (lane,) = layout(run).lanes
    labels = [s.label for s in lane.spans_of("provisioning")]
    assert "platform" in labels[0]
    assert "built" in labels[0]


def test_provisioning_with_its_own_start_is_drawn_there() -> None:
    tests = [result("t::a", "gw0", 1.0, 0.1, setup=2.0)]
    run = report(tests, provisioning=(timing("gw0", "platform", 0.5, start=1.2),))
    assert spans(run, "gw0", "provisioning") == [(1.2, 1.7)]


def test_a_worker_that_provisioned_and_ran_no_test_still_has_a_lane() -> None:
    run = report([result("t::a", "gw0", 1.0, 1.0)], provisioning=(timing("gw1", "platform", 0.4),))
    assert [lane.worker for lane in layout(run).lanes] == ["gw0", "gw1"]
    assert spans(run, "gw1", "provisioning") == [(0.0, 0.4)]
    assert spans(run, "gw1", "startup") == []


def test_a_run_without_tests_has_only_its_teardown() -> None:
    run = layout(report([], finished=2.0))
    assert run.lanes == ()
    assert run.last_test_end is None
    assert run.test_count == 0
