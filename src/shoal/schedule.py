"""Duration-aware test order for xdist, and how far a run was from its limit.

Pure: no I/O, no clock. The plugin reads the reports and hands them in; this module
only computes.

Why the order looks the way it does: xdist's ``worksteal`` cuts the collected list into
as many equal-count contiguous blocks as there are workers and later steals from the
*end* of the longest queue, by count. So the list is sorted longest first and dealt
round-robin into those blocks: every worker starts with its share of the long tests and
keeps the short ones at the end of its queue, where stealing evens out the rest. On a
skewed suite this measured 1.06x the bound, against 1.73x for plain worksteal.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol


class TimedTest(Protocol):
    """What this module reads of one test of a run (a run report's test has it)."""

    @property
    def nodeid(self) -> str: ...
    @property
    def worker(self) -> str: ...
    @property
    def start(self) -> float: ...
    @property
    def stop(self) -> float: ...
    @property
    def duration_s(self) -> float: ...
    @property
    def teardown_s(self) -> float: ...
    @property
    def total_s(self) -> float: ...


class TimedRun(Protocol):
    """What this module reads of one run (a run report has it)."""

    @property
    def tests(self) -> Sequence[TimedTest]: ...
    @property
    def started(self) -> datetime: ...
    @property
    def finished(self) -> datetime: ...
    @property
    def worker_count(self) -> int | None: ...


# How many recent reports make up the history: enough that one noisy run (a cold disk
# cache, a neighbour's CPU burst) does not move a median, few enough that a test whose
# duration really changed is picked up within a couple of runs.
HISTORY_REPORTS: Final = 5

History = Mapping[str, float]  # node id -> typical seconds (setup + call + teardown)


def durations(reports: Iterable[TimedRun]) -> dict[str, float]:
    """Node id → median over ``reports`` of its setup + call + teardown seconds.

    The first test each worker ran in a report counts without its setup: that setup
    carries the worker's session fixtures (schema provisioning among them), which will
    land on whichever test runs first next time, whatever the order. Counting it would
    make a short test look long and keep it at the front of a block for good.
    """
    samples: dict[str, list[float]] = {}
    for report in reports:
        started: set[str] = set()
        for test in sorted(report.tests, key=lambda t: (t.start, t.nodeid)):
            seconds = test.total_s
            if test.worker not in started:
                started.add(test.worker)
                seconds = test.duration_s + test.teardown_s
            samples.setdefault(test.nodeid, []).append(seconds)
    return {nodeid: statistics.median(values) for nodeid, values in samples.items()}


def worksteal_blocks(count: int, workers: int) -> list[int]:
    """The sizes of the blocks xdist's ``worksteal`` first sends, one per worker.

    Mirrors ``WorkStealingScheduling.check_schedule`` with every worker idle: worker i
    gets ``remaining // (workers - i)`` tests, so later blocks take the remainder.
    """
    sizes: list[int] = []
    remaining = count
    for i in range(workers):
        size = remaining // (workers - i)
        sizes.append(size)
        remaining -= size
    return sizes


def load_blocks(count: int, workers: int, maxschedchunk: int | None = None) -> list[int]:
    """The sizes of the first chunks xdist's ``load`` sends, one per worker.

    Mirrors ``LoadScheduling.schedule``: with fewer than two tests per worker it hands
    them out one at a time (a plain longest-first list is then the best order: no
    blocks); otherwise each worker first gets ``max(min(count // workers // 4,
    maxschedchunk), 2)`` consecutive tests and the rest is fed from the front on demand,
    which keeps the remainder longest first (longest-processing-time-first).
    """
    if workers < 1 or count < 2 * workers:
        return []
    chunk = count // workers // 4
    if maxschedchunk is not None:
        chunk = min(chunk, maxschedchunk)
    return [max(chunk, 2)] * workers


def order(
    node_ids: Sequence[str],
    history: History,
    workers: int,
    block_sizes: Sequence[int] | None = None,
) -> list[str]:
    """``node_ids`` longest first by ``history``, dealt round-robin into blocks.

    Tests the history does not know count as the median of the known ones (a new test
    is most likely an ordinary one). Ties are broken by node id, so the result depends
    on nothing but the arguments: every xdist worker computes the same list.
    ``block_sizes`` defaults to :func:`worksteal_blocks`; tests beyond their sum follow
    the blocks, still longest first. The blocks are concatenated in order.

    Returns ``node_ids`` unchanged when the history knows none of them or there is
    only one worker: without a single measurement any reordering would be a guess.
    """
    known = [history[n] for n in node_ids if n in history]
    if not known or workers < 2:
        return list(node_ids)
    typical = statistics.median(known)
    ranked = sorted(node_ids, key=lambda n: (-history.get(n, typical), n))
    sizes = list(block_sizes) if block_sizes is not None else worksteal_blocks(len(ranked), workers)
    dealt = min(sum(sizes), len(ranked))
    blocks: list[list[str]] = [[] for _ in sizes]
    cursor = 0
    for nodeid in ranked[:dealt]:
        # Round-robin, skipping blocks that are already full (worksteal's blocks can
        # differ by one test; load's chunks are all the same size).
        while len(blocks[cursor]) >= sizes[cursor]:
            cursor = (cursor + 1) % len(sizes)
        blocks[cursor].append(nodeid)
        cursor = (cursor + 1) % len(sizes)
    return [nodeid for block in blocks for nodeid in block] + ranked[dealt:]


# A plain dataclass, not a pydantic model: this module is imported by every xdist worker
# (the order), and pydantic's first model costs ~0.1 s of each worker's start-up. Run
# reports still validate it as a field, ignoring keys a newer shoal may add.
@dataclass(frozen=True)
class Distance:
    """How far a run's wall time was from the best its tests allowed, and why.

    All figures are seconds of wall time. ``startup_s + idle_s + imbalance_s +
    teardown_s == wall_s - bound_s`` exactly: the four parts are where the excess went.
    """

    workers: int  # the worker slots of the run (xdist workers, or 1)
    wall_s: float  # session start (shoal's configure) to session end
    work_s: float  # every test's setup + call + teardown, summed
    longest_s: float  # the longest single test, setup + call + teardown
    bound_s: float  # max(longest_s, work_s / workers): no schedule can beat it
    d: float  # wall_s / bound_s
    startup_s: float  # mean over workers of session start → that worker's first test
    idle_s: float  # mean over workers of the gaps between their tests
    # Mean over workers of (last test end - that worker's last test end), minus the
    # part the longest test forces (bound_s - work_s / workers). Can dip slightly below
    # zero when the worker holding the longest test started earlier than the average.
    imbalance_s: float
    teardown_s: float  # last test end → session end (worker teardown, report, exit)
    # Clock time from the first worker running out of tests to the last test's end.
    # Not one of the parts above (it overlaps imbalance): how long the run ran short-handed.
    tail_s: float

    @property
    def excess_s(self) -> float:
        return self.wall_s - self.bound_s

    def summary(self) -> list[str]:
        """Two lines for a terminal."""
        return [
            f"distance to the limit D={self.d:.2f}: wall {self.wall_s:.2f}s, bound "
            f"{self.bound_s:.2f}s = max(longest test {self.longest_s:.2f}s, "
            f"test time {self.work_s:.2f}s / {self.workers} workers)",
            f"excess {self.excess_s:.2f}s: start-up {self.startup_s:.2f}s, idle "
            f"{self.idle_s:.2f}s, imbalance {self.imbalance_s:.2f}s, teardown "
            f"{self.teardown_s:.2f}s; tail after the first worker went idle {self.tail_s:.2f}s",
        ]


def distance(report: TimedRun, workers: int | None = None) -> Distance | None:
    """The :class:`Distance` of ``report``; None when no test ran (there is no bound).

    ``workers`` defaults to the report's ``worker_count``, else the workers seen. It is
    never taken below the number of workers that ran tests: a crashed worker's
    replacement is a new worker id and a slot of its own for the time it ran.

    How the excess is split: over the run, each worker slot spends the wall time as
    start-up (before its first test), its tests, gaps between them, waiting after its
    last test for the last test of the run, and the common teardown. Averaging that
    identity over the slots gives ``wall = startup + work/workers + idle + after +
    teardown``; the bound is ``work/workers`` plus what the longest test forces beyond
    it, and that part is taken out of ``after`` to give ``imbalance``. A worker slot
    that ran no test spends the whole run up to the last test's end waiting.
    """
    tests = report.tests
    if not tests:
        return None
    by_worker: dict[str, list[TimedTest]] = {}
    for test in tests:
        by_worker.setdefault(test.worker, []).append(test)
    slots = max(workers or report.worker_count or len(by_worker), len(by_worker))
    session_start = report.started.timestamp()
    session_end = report.finished.timestamp()
    last_end = max(t.stop for t in tests)
    work = sum(t.total_s for t in tests)
    longest = max(t.total_s for t in tests)
    bound = max(longest, work / slots)
    if bound <= 0:
        return None

    startup = idle = after = 0.0
    for done in by_worker.values():
        first = min(t.start for t in done)
        last = max(t.stop for t in done)
        startup += first - session_start
        idle += (last - first) - sum(t.total_s for t in done)
        after += last_end - last
    empty = slots - len(by_worker)
    after += empty * (last_end - session_start)
    first_idle = min(max(t.stop for t in done) for done in by_worker.values())
    if empty:
        first_idle = session_start
    wall = session_end - session_start
    return Distance(
        workers=slots,
        wall_s=wall,
        work_s=work,
        longest_s=longest,
        bound_s=bound,
        d=wall / bound,
        startup_s=startup / slots,
        idle_s=idle / slots,
        imbalance_s=after / slots - (bound - work / slots),
        teardown_s=session_end - last_end,
        tail_s=last_end - first_idle,
    )
