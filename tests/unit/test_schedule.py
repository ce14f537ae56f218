"""The duration-aware order and the distance to the limit, on synthetic numbers."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal import schedule
from shoal.report import RunReport, TestResult, Versions

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
BASE = T0.timestamp()
VERSIONS = Versions(python="3.11.7", pytest="9.2.0", shoal="0.1.0")


def result(
    nodeid: str,
    worker: str,
    start: float,
    call: float,
    *,
    setup: float = 0.0,
    teardown: float = 0.0,
) -> TestResult:
    """A passed test starting ``start`` seconds after T0."""
    return TestResult(
        nodeid=nodeid,
        outcome="passed",
        worker=worker,
        duration_s=call,
        setup_s=setup,
        teardown_s=teardown,
        start=BASE + start,
        stop=BASE + start + setup + call + teardown,
    )


def report(tests: list[TestResult], wall: float, workers: int | None = None) -> RunReport:
    return RunReport(
        namespace="p1t2r0000abcd",
        args=(),
        versions=VERSIONS,
        started=T0,
        finished=T0 + timedelta(seconds=wall),
        exit_status=0,
        tests=tuple(tests),
        worker_count=workers,
    )


# -- order -------------------------------------------------------------------------------


def test_longest_first_dealt_round_robin_into_worksteal_blocks() -> None:
    history = {f"t{i}": float(i) for i in range(8)}  # t7 longest
    ids = sorted(history)
    ordered = schedule.order(ids, history, workers=2)
    # Ranked t7..t0; block 0 takes the 1st, 3rd, ... and block 1 the 2nd, 4th, ...
    assert ordered == ["t7", "t5", "t3", "t1", "t6", "t4", "t2", "t0"]


def test_uneven_blocks_match_worksteal_and_skip_full_ones() -> None:
    # worksteal splits 7 tests over 3 workers as 2, 2, 3.
    assert schedule.worksteal_blocks(7, 3) == [2, 2, 3]
    history = {f"t{i}": float(i) for i in range(7)}
    ordered = schedule.order(sorted(history), history, workers=3)
    assert ordered == ["t6", "t3", "t5", "t2", "t4", "t1", "t0"]
    blocks = [ordered[0:2], ordered[2:4], ordered[4:7]]
    # Every block starts with one of the three longest tests.
    assert {block[0] for block in blocks} == {"t6", "t5", "t4"}


def test_every_worker_starts_with_a_long_test_on_a_skewed_suite() -> None:
    ids = [f"test_short_{i:03d}" for i in range(300)] + ["test_long_a", "test_long_b"]
    history = {nodeid: 0.02 for nodeid in ids} | {"test_long_a": 3.0, "test_long_b": 2.0}
    ordered = schedule.order(ids, history, workers=2)
    sizes = schedule.worksteal_blocks(len(ids), 2)
    assert ordered[0] == "test_long_a"
    assert ordered[sizes[0]] == "test_long_b"
    assert sorted(ordered) == sorted(ids)


def test_unknown_tests_count_as_the_median_of_known_ones() -> None:
    history = {"a": 1.0, "b": 2.0, "c": 9.0}  # median 2.0
    # Ties with the median are broken by node id: "b" < "new".
    assert schedule.order(["a", "b", "c", "new"], history, workers=4, block_sizes=[]) == [
        "c",
        "b",
        "new",
        "a",
    ]


def test_ties_are_broken_by_node_id_not_by_input_order() -> None:
    history = {"x": 1.0, "y": 1.0, "z": 1.0, "w": 5.0}
    first = schedule.order(["z", "y", "x", "w"], history, workers=2)
    assert first == schedule.order(["x", "w", "z", "y"], history, workers=2)
    assert first == ["w", "y", "x", "z"]


@given(
    st.lists(st.integers(0, 60), min_size=1, max_size=60, unique=True),
    st.dictionaries(st.integers(0, 60), st.floats(0, 100), max_size=40),
    st.integers(1, 8),
    st.randoms(use_true_random=False),
)
def test_order_is_a_deterministic_permutation(
    numbers: list[int], known: dict[int, float], workers: int, rng: random.Random
) -> None:
    ids = [f"tests/test_m.py::test_{n}" for n in numbers]
    history = {f"tests/test_m.py::test_{n}": s for n, s in known.items()}
    ordered = schedule.order(ids, history, workers)
    assert sorted(ordered) == sorted(ids)
    # The same collection, listed in any order, gives the same result in every worker.
    shuffled = ids[:]
    rng.shuffle(shuffled)
    if any(n in history for n in ids) and workers > 1:
        assert schedule.order(shuffled, history, workers) == ordered


def test_without_history_the_collection_order_is_kept() -> None:
    ids = ["b", "a", "c"]
    assert schedule.order(ids, {}, workers=2) == ids
    assert schedule.order(ids, {"elsewhere": 3.0}, workers=2) == ids  # knows none of them
    assert schedule.order(ids, {"a": 1.0}, workers=1) == ids  # one worker: nothing to split


def test_load_blocks_mirror_the_first_chunks_and_keep_the_rest_longest_first() -> None:
    assert schedule.load_blocks(3, 2) == []  # fewer than 2 per worker: sent one by one
    assert schedule.load_blocks(80, 2) == [10, 10]
    assert schedule.load_blocks(80, 2, maxschedchunk=1) == [2, 2]
    history = {f"t{i:02d}": float(i) for i in range(20)}
    sizes = schedule.load_blocks(20, 2)
    assert sizes == [2, 2]
    ordered = schedule.order(sorted(history), history, workers=2, block_sizes=sizes)
    assert ordered[:4] == ["t19", "t17", "t18", "t16"]
    assert ordered[4:] == [f"t{i:02d}" for i in range(15, -1, -1)]


# -- durations ----------------------------------------------------------------------------


def test_durations_are_medians_and_ignore_each_workers_first_setup() -> None:
    runs = []
    for call in (1.0, 2.0, 9.0):
        runs.append(
            report(
                [
                    # First on gw0: its 5 s setup is the worker's session fixtures.
                    result("a", "gw0", 0.0, call, setup=5.0, teardown=0.5),
                    result("b", "gw0", 10.0, 0.1, setup=0.2),
                    result("c", "gw1", 0.0, 0.3),
                ],
                wall=20.0,
            )
        )
    history = schedule.durations(runs)
    assert history == {"a": pytest.approx(2.5), "b": pytest.approx(0.3), "c": pytest.approx(0.3)}
    assert schedule.durations([]) == {}


# -- distance -----------------------------------------------------------------------------


def parts(d: schedule.Distance) -> float:
    return d.startup_s + d.idle_s + d.imbalance_s + d.teardown_s


def test_distance_of_a_perfectly_balanced_run() -> None:
    tests = [
        result("a", "gw0", 1.0, 2.0),
        result("b", "gw0", 3.0, 2.0),
        result("c", "gw1", 1.0, 4.0),
    ]
    d = schedule.distance(report(tests, wall=6.0, workers=2))
    assert d is not None
    assert d.workers == 2
    assert d.work_s == pytest.approx(8.0)
    assert d.longest_s == pytest.approx(4.0)
    assert d.bound_s == pytest.approx(4.0)
    assert d.d == pytest.approx(1.5)
    assert d.startup_s == pytest.approx(1.0)
    assert d.idle_s == pytest.approx(0.0)
    assert d.imbalance_s == pytest.approx(0.0)
    assert d.teardown_s == pytest.approx(1.0)
    assert d.tail_s == pytest.approx(0.0)
    assert parts(d) == pytest.approx(d.excess_s)


def test_distance_splits_idle_imbalance_and_tail() -> None:
    tests = [
        # gw0: start-up 0.5, a gap of 1 s between its tests, done at 4.5.
        result("a", "gw0", 0.5, 1.0),
        result("b", "gw0", 2.5, 2.0),
        # gw1: start-up 1.5, done at 10.5 after one long test.
        result("c", "gw1", 1.5, 9.0, setup=0.0),
    ]
    d = schedule.distance(report(tests, wall=11.0, workers=2))
    assert d is not None
    assert d.work_s == pytest.approx(12.0)
    assert d.bound_s == pytest.approx(9.0)  # the longest test beats 12 / 2
    assert d.startup_s == pytest.approx(1.0)  # (0.5 + 1.5) / 2
    assert d.idle_s == pytest.approx(0.5)  # (1.0 + 0) / 2
    # gw0 waited 6 s for gw1, i.e. 3 s per worker; the 9 s test forces 9 - 6 = 3 of them.
    assert d.imbalance_s == pytest.approx(0.0)
    assert d.teardown_s == pytest.approx(0.5)
    assert d.tail_s == pytest.approx(6.0)
    assert d.d == pytest.approx(11.0 / 9.0)
    assert parts(d) == pytest.approx(d.excess_s)


def test_distance_of_a_skewed_run_in_collection_order() -> None:
    # Both long tests landed on gw1; gw0 ran out of work early.
    tests = [result(f"s{i}", "gw0", 0.2 + i, 1.0) for i in range(4)]
    tests += [result("l1", "gw1", 0.2, 4.0), result("l2", "gw1", 4.2, 4.0)]
    d = schedule.distance(report(tests, wall=8.4, workers=2))
    assert d is not None
    assert d.bound_s == pytest.approx(6.0)
    assert d.imbalance_s == pytest.approx(2.0)  # gw0 idle 4 s of 8: 2 s per worker
    assert d.tail_s == pytest.approx(4.0)
    assert parts(d) == pytest.approx(d.excess_s)


def test_a_worker_that_ran_nothing_counts_as_waiting() -> None:
    tests = [result("a", "gw0", 0.0, 2.0), result("b", "gw0", 2.0, 2.0)]
    d = schedule.distance(report(tests, wall=4.0, workers=2))
    assert d is not None
    assert d.bound_s == pytest.approx(2.0)
    assert d.d == pytest.approx(2.0)
    assert d.imbalance_s == pytest.approx(2.0)
    assert d.tail_s == pytest.approx(4.0)
    assert parts(d) == pytest.approx(d.excess_s)


def test_distance_without_tests_is_none_and_workers_default_to_those_seen() -> None:
    assert schedule.distance(report([], wall=1.0)) is None
    tests = [result("a", "gw0", 0.0, 1.0), result("b", "gw1", 0.0, 1.0)]
    d = schedule.distance(report(tests, wall=1.0))  # an old report: no worker_count
    assert d is not None
    assert d.workers == 2
    assert d.d == pytest.approx(1.0)


def test_summary_names_every_figure() -> None:
    tests = [result("a", "gw0", 0.5, 2.0), result("b", "gw1", 0.5, 1.0)]
    d = schedule.distance(report(tests, wall=3.0, workers=2))
    assert d is not None
    first, second = d.summary()
    assert first.startswith("distance to the limit D=1.50: wall 3.00s, bound 2.00s")
    for word in ("start-up 0.50s", "idle 0.00s", "imbalance 0.00s", "teardown 0.50s", "tail"):
        assert word in second
