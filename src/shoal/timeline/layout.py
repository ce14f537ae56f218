"""Where each moment of a run went, worker by worker: the timeline's geometry, in seconds.

Pure: a :class:`~shoal.report.RunReport` in, lanes of spans out (epoch seconds, as in
the report). Rendering maps them onto an axis; nothing here knows about HTML.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

from shoal.report import ProvisioningTiming, RunReport, TestResult, worker_order

SpanKind = Literal["startup", "provisioning", "idle", "waiting", "teardown", "after"]

# A provisioning is looked for in the setup of a test that can hold it: rounding in the
# two clocks (the worker's timer and pytest's phase durations) makes the setup a hair
# shorter than the provisioning it contains.
_HOST_SLACK = 0.9


@dataclass(frozen=True)
class Span:
    """A stretch of one lane that is not a test: its kind, when, and what to say on hover."""

    kind: SpanKind
    start: float
    end: float
    label: str

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Lane:
    """One worker: its tests in the order they ran, and the spans between and around them."""

    worker: str
    tests: tuple[TestResult, ...]
    spans: tuple[Span, ...]
    busy_s: float
    idle_s: float  # gaps between its tests (not start-up, not waiting at the end)

    def spans_of(self, kind: SpanKind) -> list[Span]:
        return [span for span in self.spans if span.kind == kind]


@dataclass(frozen=True)
class RunLayout:
    report: RunReport
    lanes: tuple[Lane, ...]
    start: float  # the session start, epoch seconds
    last_test_end: float | None  # None when no test ran
    finished: float  # the report's ``finished`` stamp
    exited: float | None  # when the process was done, if the report knows

    @property
    def end(self) -> float:
        return max(self.finished, self.exited or self.finished)

    @property
    def test_count(self) -> int:
        return sum(len(lane.tests) for lane in self.lanes)


def layout(report: RunReport, min_gap_s: float = 0.0) -> RunLayout:
    """The lanes of ``report``; gaps between tests shorter than ``min_gap_s`` are left out
    as spans (they still count in each lane's ``idle_s``)."""
    start = report.started.timestamp()
    finished = report.finished.timestamp()
    exited = report.exited.timestamp() if report.exited is not None else None
    by_worker: dict[str, list[TestResult]] = {}
    for test in report.tests:
        by_worker.setdefault(test.worker, []).append(test)
    provisioning: dict[str, list[ProvisioningTiming]] = {}
    for timing in report.provisioning:
        provisioning.setdefault(timing.worker, []).append(timing)
    last_end = max((t.stop for t in report.tests), default=None)
    # The session's end phase belongs to every lane: worker teardown and the report's
    # writing happen after the last test, whoever ran it.
    tail_from = last_end if last_end is not None else start
    common = [Span("teardown", tail_from, finished, "teardown: last test end → session end")]
    if exited is not None and exited > finished:
        common.append(Span("after", finished, exited, "after the report: unconfigure and exit"))

    lanes = []
    for worker in sorted(set(by_worker) | set(provisioning), key=worker_order):
        tests = tuple(sorted(by_worker.get(worker, []), key=lambda t: (t.start, t.nodeid)))
        spans = _lane_spans(tests, provisioning.get(worker, []), start, last_end, min_gap_s)
        busy = sum(t.total_s for t in tests)
        idle = sum(max(b.start - a.stop, 0.0) for a, b in pairwise(tests))
        lanes.append(Lane(worker, tests, (*spans, *common), busy, idle))
    return RunLayout(report, tuple(lanes), start, last_end, finished, exited)


def _lane_spans(
    tests: Sequence[TestResult],
    timings: Sequence[ProvisioningTiming],
    session_start: float,
    last_end: float | None,
    min_gap_s: float,
) -> list[Span]:
    spans: list[Span] = []
    if tests:
        first = tests[0].start
        if first > session_start:
            spans.append(
                Span("startup", session_start, first, "start-up: session start → first test")
            )
        for before, after in pairwise(tests):
            gap = after.start - before.stop
            if gap > 0 and gap >= min_gap_s:
                spans.append(Span("idle", before.stop, after.start, "idle between tests"))
        own_end = max(t.stop for t in tests)
        if last_end is not None and last_end > own_end:
            spans.append(
                Span("waiting", own_end, last_end, "out of tests: waiting for the last one")
            )
    spans += provisioning_spans(tests, timings, session_start)
    return spans


def provisioning_spans(
    tests: Sequence[TestResult], timings: Sequence[ProvisioningTiming], session_start: float
) -> list[Span]:
    """One span per database the worker provisioned.

    A timing that carries its own ``start`` is drawn there. Otherwise the worker's
    provisioning happened inside the setup of the first test that asked for a shoal
    fixture (every test, when the project configures shoal), so it is placed, database
    after database, at the start of the first test whose setup is long enough to hold it.
    """
    if not timings:
        return []
    total = sum(t.total_s for t in timings)
    hosts = [t for t in tests if t.setup_s >= total * _HOST_SLACK]
    host = hosts[0] if hosts else (tests[0] if tests else None)
    cursor = host.start if host is not None else session_start
    spans = []
    for timing in timings:
        begin = timing.start if timing.start is not None else cursor
        spans.append(Span("provisioning", begin, begin + timing.total_s, _describe(timing)))
        cursor = begin + timing.total_s
    return spans


def _describe(timing: ProvisioningTiming) -> str:
    how = "claimed from the warm pool" if timing.claimed else "built"
    return (
        f"provisioning {timing.database} ({how}): {timing.total_s:.3f}s = slot wait "
        f"{timing.slot_wait_s:.3f}s + create {timing.create_s:.3f}s + setup {timing.setup_s:.3f}s"
    )
