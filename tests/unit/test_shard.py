"""The partition across machines, the fleet's figures and which reports a merge takes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal import shard
from shoal.errors import UsageError
from shoal.report import RunReport, TestResult, Versions

T0 = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)

# -- I/N ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "index", "total"), [("1/1", 1, 1), ("2/3", 2, 3), (" 3 / 3 ", 3, 3)]
)
def test_a_shard_is_i_of_n(text: str, index: int, total: int) -> None:
    spec = shard.parse_spec(text, "--shoal-shard", "the command line")
    assert (spec.index, spec.total) == (index, total)
    assert str(spec) == f"{index}/{total}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3/2", "1 <= I <= N = 2"),
        ("0/2", "1 <= I <= N = 2"),
        ("1/0", "N >= 1"),
        ("a/b", "expected I/N, e.g. 2/3"),
        ("2", "expected I/N, e.g. 2/3"),
        ("-1/2", "expected I/N, e.g. 2/3"),
        ("", "expected I/N, e.g. 2/3"),
    ],
)
def test_a_bad_shard_names_the_key_the_value_and_what_was_expected(
    text: str, expected: str
) -> None:
    with pytest.raises(UsageError) as caught:
        shard.parse_spec(text, "SHOAL_SHARD", "the environment")
    message = str(caught.value)
    assert message.startswith(f"SHOAL_SHARD = {text!r} (from the environment): ")
    assert expected in message


# -- the partition ----------------------------------------------------------------------

node_ids = st.lists(
    st.text(alphabet="abcdefgh/:_[]0123456789", min_size=1, max_size=12), unique=True, max_size=60
)


@st.composite
def suites(draw: st.DrawFn) -> tuple[list[str], dict[str, float], int, dict[str, str]]:
    ids = draw(node_ids)
    known = draw(st.lists(st.sampled_from(ids), unique=True)) if ids else []
    seconds = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)
    history = {n: draw(seconds) for n in known}
    history["not collected"] = 1e6  # history of a removed test changes nothing
    groups = {n: draw(st.sampled_from("xyz")) for n in ids if draw(st.booleans())}
    return ids, history, draw(st.integers(min_value=1, max_value=7)), groups


@settings(max_examples=200, deadline=None)
@given(suites(), st.randoms(use_true_random=False))
def test_every_test_in_exactly_one_shard_whatever_the_collection_order(
    suite: tuple[list[str], dict[str, float], int, dict[str, str]], rnd: random.Random
) -> None:
    ids, history, shards, groups = suite
    part = shard.partition(ids, history, shards, groups)
    assert len(part.shards) == shards
    flat = [n for p in part.shards for n in p]
    assert sorted(flat) == sorted(ids)
    # Each shard keeps the collection order it was given.
    position = {n: i for i, n in enumerate(ids)}
    for p in part.shards:
        assert [position[n] for n in p] == sorted(position[n] for n in p)
    # Another machine collecting in another order computes the same sets.
    shuffled = ids[:]
    rnd.shuffle(shuffled)
    again = shard.partition(shuffled, dict(reversed(history.items())), shards, groups)
    assert [set(p) for p in again.shards] == [set(p) for p in part.shards]


@settings(max_examples=200, deadline=None)
@given(suites())
def test_the_longest_shard_is_at_most_the_share_plus_one_unit(
    suite: tuple[list[str], dict[str, float], int, dict[str, str]],
) -> None:
    # Graham's bound for list scheduling, which LPT obeys: the shard that ends last got
    # its last unit when it was the least loaded, so it ends by share + that unit.
    # A unit kept whole is at most GROUP_LIMIT of the share.
    ids, history, shards, groups = suite
    part = shard.partition(ids, history, shards, groups)
    estimate = [history.get(n, part.typical_s) for n in ids]
    if not ids:
        return
    share = sum(estimate) / shards
    largest = max(max(estimate), share * shard.GROUP_LIMIT)
    assert max(part.estimates) <= share + largest + 1e-9
    assert sum(part.estimates) == pytest.approx(sum(estimate))


def test_without_history_the_shards_get_equal_counts_not_collection_slices() -> None:
    ids = [f"tests/test_m.py::test_x[{i}]" for i in range(100)]
    part = shard.partition(ids, {}, 3)
    assert sorted(len(p) for p in part.shards) == [33, 33, 34]
    assert part.known == 0
    # Not contiguous blocks of the collection: neighbours are spread by their hash.
    assert part.shards[0] != tuple(ids[: len(part.shards[0])])


def test_longest_first_into_the_shard_that_ends_earliest() -> None:
    history = {"a": 9.0, "b": 7.5, "c": 6.0, **{f"s{i}": 1.0 for i in range(18)}}
    part = shard.partition(list(history), history, 3)
    assert [p[0] in ("a", "b", "c") for p in part.shards] == [True, True, True]
    assert max(part.estimates) == pytest.approx(sum(history.values()) / 3, abs=1.0)


def test_an_unknown_test_counts_as_the_median_of_the_known() -> None:
    history = {"a": 1.0, "b": 2.0, "c": 10.0}
    part = shard.partition(["a", "b", "c", "new"], history, 2)
    assert part.typical_s == 2.0
    assert part.known == 3
    assert sorted(part.estimates) == [5.0, 10.0]  # new (2) + a + b against c


def test_a_module_with_shared_fixtures_stays_whole() -> None:
    ids = [f"m.py::t{i}" for i in range(2)] + [f"o.py::t{i}" for i in range(31)]
    groups = {n: "m.py" for n in ids[:2]}
    part = shard.partition(ids, {}, 3, groups)  # 2 of 33: within a quarter of 11
    (holder,) = [p for p in part.shards if "m.py::t0" in p]
    assert set(ids[:2]) <= set(holder)
    # Not by chance: without the group the same two tests land on different shards.
    ungrouped = shard.partition(ids, {}, 3)
    assert not any(set(ids[:2]) <= set(p) for p in ungrouped.shards)
    assert sorted(len(p) for p in part.shards) == [11, 11, 11]
    assert part.split_groups == ()


def test_a_module_too_large_to_keep_whole_is_split() -> None:
    ids = [f"m.py::t{i}" for i in range(12)] + [f"o.py::t{i}" for i in range(12)]
    groups = {n: "m.py" for n in ids[:12]}
    part = shard.partition(ids, {}, 3, groups)  # 12 of 24 is more than a quarter of 8
    assert part.split_groups == ("m.py",)
    assert sorted(len(p) for p in part.shards) == [8, 8, 8]


def test_by_count_is_equal_contiguous_slices() -> None:
    assert shard.by_count(list("abcdefg"), 3) == [list("abc"), list("de"), list("fg")]


def test_the_digest_names_the_inputs() -> None:
    one = shard.history_digest({"a": 1.0, "b": 2.0}, 3)
    assert one == shard.history_digest({"b": 2.0, "a": 1.0}, 3)
    assert one != shard.history_digest({"a": 1.0, "b": 2.5}, 3)
    assert one != shard.history_digest({"a": 1.0, "b": 2.0}, 2)


# -- the fleet --------------------------------------------------------------------------


def run(label: str | None, seconds: list[float], wall: float, started: datetime = T0) -> RunReport:
    base = started.timestamp()
    tests = tuple(
        TestResult(
            nodeid=f"t.py::t{label}_{i}",
            outcome="passed",
            worker="main",
            duration_s=s,
            start=base,
            stop=base + s,
        )
        for i, s in enumerate(seconds)
    )
    return RunReport(
        namespace=f"p1t{int(base)}r0000abcd",
        args=(),
        versions=Versions(python="3", pytest="9", shoal="0"),
        started=started,
        finished=started + timedelta(seconds=wall),
        exit_status=0,
        tests=tests,
        worker_count=1,
        shard=label,
    )


def test_the_fleet_is_its_longest_shard_against_the_bound() -> None:
    runs = [run("1/3", [4.0, 1.0], 6.0), run("2/3", [3.0, 2.0], 5.5), run("3/3", [5.0], 5.0)]
    fleet = shard.fleet(runs, ["1/3", "2/3", "3/3"])
    assert fleet is not None
    assert fleet.work_s == pytest.approx(15.0)
    assert fleet.slots == 3
    assert fleet.bound_s == pytest.approx(5.0)  # max(longest 5, 15 / 3)
    assert fleet.wall_s == 6.0
    assert fleet.d == pytest.approx(1.2)
    assert fleet.imbalance == pytest.approx(6.0 / (16.5 / 3))
    assert fleet.duplicates == ()


def test_the_fleet_names_tests_that_ran_twice() -> None:
    runs = [run("1/2", [1.0], 2.0), run("1/2", [1.0], 2.0)]
    fleet = shard.fleet(runs, ["a", "b"])
    assert fleet is not None
    assert fleet.duplicates == ("t.py::t1/2_0",)


def test_a_merge_takes_the_newest_of_each_shard_of_the_newest_fleet_size() -> None:
    old = [run(f"{i}/3", [1.0], 1.0, T0) for i in (1, 2, 3)]
    new = [run(f"{i}/3", [1.0], 1.0, T0 + timedelta(hours=1)) for i in (1, 3)]
    other = [run("1/2", [1.0], 1.0, T0 - timedelta(hours=1)), run(None, [1.0], 1.0)]
    runs = old + new + other
    chosen = shard.choose(runs, [r.namespace for r in runs])
    assert chosen.labels == ("1/3", "2/3", "3/3")
    assert chosen.runs == (new[0], old[1], new[1])
    assert chosen.left_out == len(runs) - 3
    assert chosen.missing == ()
    only = shard.choose(new, ["x", "y"])
    assert only.missing == ("2/3",)


def test_a_merge_of_unsharded_runs_keeps_them_all() -> None:
    runs = [run(None, [1.0], 1.0), run(None, [2.0], 2.0)]
    chosen = shard.choose(runs, ["a", "b"])
    assert chosen.runs == tuple(runs)
    assert chosen.labels == ("a", "b")


def test_a_report_written_before_sharding_reads_as_no_shard() -> None:
    written = run("2/3", [1.0], 1.0).model_dump(mode="json")
    assert written["shard"] == "2/3"
    del written["shard"]
    assert RunReport.model_validate(written).shard is None
