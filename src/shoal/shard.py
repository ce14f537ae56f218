"""Splitting a suite across machines by past durations (``--shoal-shard I/N``), and how
far the fleet of shards was from its limit.

Pure: no I/O, no clock. Every machine of a CI fleet runs the same function on the same
node ids and the same history and so computes the same partition; nothing here depends
on collection order, the process, or Python's per-process string hashing.

The partition is longest-processing-time-first: units (a test, or a module or class
kept whole, below) sorted longest first, each into the shard that ends earliest so far.
That is pytest-split's ``least_duration``; its other algorithm, contiguous chunks of the
collection, leaves the shards as uneven as the collection order is skewed.

Why some tests travel together: a module- or class-scoped fixture is set up once per
process that runs any test of its module or class. Split such a module over three
machines and its fixture is paid three times. So tests that use one are kept with the
rest of their module (or class) as one unit, unless that unit alone is larger than
:data:`GROUP_LIMIT` of a shard's share: an indivisible piece that big can make its shard
finish late by up to its own size, which costs more than one more fixture set-up does.
"""

from __future__ import annotations

import hashlib
import heapq
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeVar

from shoal.errors import UsageError
from shoal.schedule import TimedRun

# A kept-whole unit may hold at most this share of one shard's work. LPT's finish is at
# most the share plus the last unit placed on the latest shard; units are placed longest
# first, so a large unit is only last when little is left to fill around it. A quarter
# keeps that worst case bounded while letting ordinary modules (far smaller) stay whole.
GROUP_LIMIT: Final = 0.25
# Without any history every test weighs the same: the shards get equal counts.
UNKNOWN_DEFAULT_S: Final = 1.0

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class ShardSpec:
    """Shard ``index`` (1-based) of ``total``."""

    index: int
    total: int

    def __str__(self) -> str:
        return f"{self.index}/{self.total}"


def parse_spec(text: str, key: str, source: str) -> ShardSpec:
    """``"I/N"`` with 1 <= I <= N; otherwise a :class:`UsageError` naming ``key``."""
    match = _SPEC.match(text)
    if match is None:
        raise UsageError(key, text, source, "expected I/N, e.g. 2/3 (shard I of N, 1 <= I <= N)")
    index, total = int(match[1]), int(match[2])
    if total < 1:
        raise UsageError(key, text, source, "expected I/N with N >= 1 shards, e.g. 1/2")
    if not 1 <= index <= total:
        raise UsageError(key, text, source, f"expected I/N with 1 <= I <= N = {total}")
    return ShardSpec(index, total)


@dataclass(frozen=True)
class Partition:
    """The tests of every shard, each in the order they were given."""

    shards: tuple[tuple[str, ...], ...]
    estimates: tuple[float, ...]  # each shard's expected seconds, by the history
    known: int  # tests the history knew
    typical_s: float  # what an unknown test was counted as
    split_groups: tuple[str, ...]  # units too large to keep whole, run test by test

    def of(self, spec: ShardSpec) -> tuple[str, ...]:
        return self.shards[spec.index - 1]


def _tiebreak(key: str) -> bytes:
    # A stable hash, not hash(): str hashes differ between processes. Hashing rather than
    # sorting by name spreads neighbours (test_x[0], test_x[1], ...) across the shards.
    return hashlib.blake2b(key.encode(), digest_size=8).digest()


def partition(
    node_ids: Sequence[str],
    history: Mapping[str, float],
    shards: int,
    groups: Mapping[str, str] | None = None,
) -> Partition:
    """Split ``node_ids`` into ``shards`` parts that should take equally long.

    ``history``: node id → seconds; a test it does not know counts as the median of the
    known ones among ``node_ids`` (every test as one second when none is known).
    ``groups``: node id → the key of a unit it must share a shard with (its module or
    class); node ids not in it are units of their own. Deterministic in its arguments.
    """
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    known = [history[n] for n in node_ids if n in history]
    typical = statistics.median(known) if known else UNKNOWN_DEFAULT_S
    estimate = {n: history.get(n, typical) for n in node_ids}
    share = sum(estimate.values()) / shards

    members: dict[str, list[str]] = {}
    for nodeid in node_ids:
        key = (groups or {}).get(nodeid)
        members.setdefault(nodeid if key is None else "\0" + key, []).append(nodeid)
    units: list[tuple[float, str, list[str]]] = []
    split: list[str] = []
    for key, nodeids in members.items():
        seconds = sum(estimate[n] for n in nodeids)
        if len(nodeids) > 1 and seconds > share * GROUP_LIMIT:
            split.append(key[1:])
            units += [(estimate[n], n, [n]) for n in nodeids]
        else:
            units.append((seconds, key, nodeids))
    units.sort(key=lambda u: (-u[0], _tiebreak(u[1]), u[1]))

    heap = [(0.0, i) for i in range(shards)]
    chosen: dict[str, int] = {}
    loads = [0.0] * shards
    for seconds, _, nodeids in units:
        load, index = heapq.heappop(heap)  # the shard that ends earliest; ties: the lowest
        for nodeid in nodeids:
            chosen[nodeid] = index
        loads[index] = load + seconds
        heapq.heappush(heap, (loads[index], index))
    parts: list[list[str]] = [[] for _ in range(shards)]
    for nodeid in node_ids:
        parts[chosen[nodeid]].append(nodeid)
    return Partition(
        shards=tuple(tuple(p) for p in parts),
        estimates=tuple(loads),
        known=len(known),
        typical_s=typical,
        split_groups=tuple(sorted(split)),
    )


def by_count(node_ids: Sequence[str], shards: int) -> list[list[str]]:
    """Equal-count contiguous slices of the collection: the split that ignores durations
    (pytest-test-groups' way), kept as the baseline the benchmark compares against."""
    sizes = [
        len(node_ids) // shards + (1 if i < len(node_ids) % shards else 0) for i in range(shards)
    ]
    parts, start = [], 0
    for size in sizes:
        parts.append(list(node_ids[start : start + size]))
        start += size
    return parts


def history_digest(history: Mapping[str, float], shards: int) -> str:
    """A short fingerprint of a partition's inputs besides the collection: machines that
    print the same digest and collect the same tests run the same partition."""
    h = hashlib.blake2b(digest_size=4)
    h.update(f"{shards}\n".encode())
    for nodeid in sorted(history):
        h.update(f"{nodeid}\0{history[nodeid]!r}\n".encode())
    return h.hexdigest()


# -- the fleet: shards' reports merged -----------------------------------------------------


@dataclass(frozen=True)
class ShardRun:
    """One shard's run as its report tells it."""

    label: str  # "I/N", or the report's namespace when it recorded no shard
    wall_s: float  # session start to session end
    work_s: float  # its tests' setup + call + teardown, summed
    tests: int
    slots: int  # worker slots: xdist workers, or 1


@dataclass(frozen=True)
class Fleet:
    """How far a fleet of shards was from the best its tests allowed.

    ``bound_s = max(longest test, work / slots)`` with ``slots`` every shard's worker
    slots together: one per machine when each runs without xdist. ``d`` is the longest
    shard's wall against it; above 1 by start-up, imbalance between and inside shards.
    """

    shards: tuple[ShardRun, ...]
    wall_s: float  # the longest shard
    work_s: float
    longest_s: float
    slots: int
    bound_s: float
    d: float
    # Node ids more than one shard ran: the shards computed different partitions
    # (different history, or different collections).
    duplicates: tuple[str, ...]

    @property
    def imbalance(self) -> float:
        """The longest shard's wall over the mean shard wall (1.0: they finished together)."""
        mean = sum(s.wall_s for s in self.shards) / len(self.shards)
        return self.wall_s / mean if mean > 0 else 1.0


def fleet(runs: Sequence[TimedRun], labels: Sequence[str]) -> Fleet | None:
    """The :class:`Fleet` of ``runs`` (one per shard, labelled); None when no test ran."""
    tests = [t for run in runs for t in run.tests]
    if not tests:
        return None
    shards = tuple(
        ShardRun(
            label=label,
            wall_s=(run.finished - run.started).total_seconds(),
            work_s=sum(t.total_s for t in run.tests),
            tests=len(run.tests),
            slots=max(run.worker_count or 1, len({t.worker for t in run.tests}), 1),
        )
        for run, label in zip(runs, labels, strict=True)
    )
    seen: dict[str, int] = {}
    for run in runs:
        for nodeid in {t.nodeid for t in run.tests}:
            seen[nodeid] = seen.get(nodeid, 0) + 1
    work = sum(s.work_s for s in shards)
    longest = max(t.total_s for t in tests)
    slots = sum(s.slots for s in shards)
    bound = max(longest, work / slots)
    wall = max(s.wall_s for s in shards)
    return Fleet(
        shards=shards,
        wall_s=wall,
        work_s=work,
        longest_s=longest,
        slots=slots,
        bound_s=bound,
        d=wall / bound if bound > 0 else 1.0,
        duplicates=tuple(sorted(n for n, count in seen.items() if count > 1)),
    )


class LabelledRun(TimedRun, Protocol):
    """A run that may say which shard it was (a run report does)."""

    @property
    def shard(self) -> str | None: ...


R = TypeVar("R", bound=LabelledRun)


@dataclass(frozen=True)
class Chosen(Generic[R]):
    """The runs a merge covers, and what it left out or found missing."""

    runs: tuple[R, ...]
    labels: tuple[str, ...]
    left_out: int  # older runs of a shard already covered, or runs of another fleet size
    missing: tuple[str, ...]  # shards of the fleet with no report given


def choose(runs: Sequence[R], names: Sequence[str]) -> Chosen[R]:
    """The newest run of each shard, of the newest run's fleet size.

    A directory that CI restores from a cache holds the shards of many pipelines: their
    newest are the last fleet. Runs that recorded no shard (concurrent runs of one
    machine) are all kept, labelled by ``names`` (one per run), when none recorded one.
    """
    labelled = [(run, parse_label(run.shard)) for run in runs if run.shard is not None]
    specs = [(run, spec) for run, spec in labelled if spec is not None]
    if not specs:
        return Chosen(tuple(runs), tuple(names), 0, ())
    total = max(specs, key=lambda pair: pair[0].started)[1].total
    newest: dict[int, R] = {}
    for run, spec in specs:
        if spec.total == total and (
            spec.index not in newest or run.started > newest[spec.index].started
        ):
            newest[spec.index] = run
    indices = sorted(newest)
    return Chosen(
        runs=tuple(newest[i] for i in indices),
        labels=tuple(f"{i}/{total}" for i in indices),
        left_out=len(runs) - len(indices),
        missing=tuple(f"{i}/{total}" for i in range(1, total + 1) if i not in newest),
    )


def parse_label(label: str) -> ShardSpec | None:
    """A report's ``shard`` field, or None if it is not a valid ``I/N``."""
    try:
        return parse_spec(label, "shard", "a report")
    except UsageError:
        return None
