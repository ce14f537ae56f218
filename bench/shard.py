"""Sharding: how evenly ``--shoal-shard I/N`` splits a suite across machines.

The suite is the skewed one of ``bench/schedule.py`` (``--long`` multi-second tests in
a module collected last, ``--short`` tests of ``--short-ms`` ms in six modules before
it: 40.5 s of test time by default), written to a temporary project with no databases.
Every mode runs its ``--shards`` shards at once, each a ``python -m pytest -n 0`` of its
own, as separate machines would; each writes a run report, and the figures come from
those reports:

- count: equal counts in collection order (contiguous slices, the split that ignores
  durations; a small plugin of this script deselects the rest)
- shoal: ``--shoal-shard I/N --shoal-history H``, H holding the reports of one earlier
  fleet run (the untimed warm-up, a count split: it ran every test once)
- shoal-no-history: ``--shoal-shard I/N`` with an empty history: equal counts by node
  id hash

"longest / share" is the longest shard's test time over the fleet's test time / N: what
the partition controls (goal: <= 1.10 for shoal). "fleet D" is the longest shard's wall
(session start to end, start-up included) over max(longest test, test time / N).

``--fixture-modules M`` adds the grouping measurement: a second suite, the first plus M
modules of ``--fixture-tests`` 20 ms tests that share a module-scoped fixture of
``--fixture-s`` seconds, split by shoal (which keeps each such module on one shard) and
by the same partition without groups (this script's plugin calls
``shoal.shard.partition`` with no groups, so each module's fixture is set up on every
shard that runs part of it).

Run (from the repository root)::

    .venv/bin/python bench/shard.py [--shards 3] [--repeat 2] [--fixture-modules 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from schedule import clean_env, machine, write_suite

from shoal.report import RunReport, list_reports, read_report
from shoal.shard import Fleet, fleet

GOAL = 1.10
SPLIT_PLUGIN = "bench_split"
# Deselects by BENCH_SPLIT=count|ungrouped and BENCH_SHARD=I/N, from the same history a
# shoal shard would read (BENCH_HISTORY).
SPLIT_SOURCE = """\
import os
from pathlib import Path

import pytest

from shoal import schedule, shard
from shoal.report import list_reports, read_report


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    mode = os.environ.get("BENCH_SPLIT")
    if not mode:
        return
    spec = shard.parse_spec(os.environ["BENCH_SHARD"], "BENCH_SHARD", "the environment")
    ids = [item.nodeid for item in items]
    if mode == "count":
        keep = set(shard.by_count(ids, spec.total)[spec.index - 1])
    else:
        reports = [read_report(e.path) for e in list_reports(Path(os.environ["BENCH_HISTORY"]))]
        part = shard.partition(ids, schedule.durations(reports), spec.total)
        keep = set(part.of(spec))
    config.hook.pytest_deselected(items=[i for i in items if i.nodeid not in keep])
    items[:] = [i for i in items if i.nodeid in keep]
"""
FIXTURE_MODULE = """\
import time

import pytest


@pytest.fixture(scope="module")
def expensive():
    time.sleep({seconds!r})


@pytest.mark.parametrize("n", range({count}))
def test_uses(expensive, n):
    time.sleep(0.02)
"""
BASE_ARGS = ["-n", "0", "-q", "-p", "no:cacheprovider", "-p", "no:hypothesispytest"]


@dataclass
class Cell:
    suite: str
    mode: str
    fleets: list[Fleet] = field(default_factory=list)

    def median(self, figure: str) -> float:
        return statistics.median(_figure(f, figure) for f in self.fleets)


def _figure(f: Fleet, figure: str) -> float:
    if figure == "longest_share":
        return max(s.work_s for s in f.shards) / (f.work_s / len(f.shards))
    if figure == "longest_work_s":
        return max(s.work_s for s in f.shards)
    return float(getattr(f, figure))


def run_fleet(root: Path, mode: str, shards: int, out: Path, history: Path) -> Fleet:
    procs = []
    for i in range(1, shards + 1):
        env = clean_env()
        env["SHOAL_REPORTS_DIR"] = str(out)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(root / "probe"), env.get("PYTHONPATH")) if p
        )
        argv = [sys.executable, "-m", "pytest", *BASE_ARGS, "-p", SPLIT_PLUGIN, "--shoal-report"]
        if mode.startswith("shoal"):
            argv += ["--shoal-shard", f"{i}/{shards}", "--shoal-history", str(history)]
        else:
            env.update(BENCH_SPLIT=mode, BENCH_SHARD=f"{i}/{shards}", BENCH_HISTORY=str(history))
        procs.append(
            subprocess.Popen(
                argv, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    for proc in procs:
        output, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"{mode}: a shard exited {proc.returncode}:\n{output[-3000:]}")
    reports: list[RunReport] = [read_report(e.path) for e in list_reports(out)]
    if len(reports) != shards:
        raise SystemExit(f"{mode}: {len(reports)} reports in {out}, expected {shards}")
    ran = [t.nodeid for r in reports for t in r.tests]
    if len(ran) != len(set(ran)):
        raise SystemExit(f"{mode}: some test ran in two shards")
    measured = fleet(reports, [r.shard or r.namespace for r in reports])
    assert measured is not None
    return measured


def write_fixture_modules(root: Path, modules: int, tests: int, seconds: float) -> None:
    for m in range(modules):
        text = FIXTURE_MODULE.format(seconds=seconds, count=tests)
        (root / "tests" / f"test_fixture_{m}.py").write_text(text)


def measure(root: Path, suite: str, modes: list[str], args: argparse.Namespace) -> list[Cell]:
    history = root / "history"
    empty = root / "empty"
    empty.mkdir()
    counter = iter(range(10_000))
    # Untimed warm-up: one count-split fleet run, the history every shoal shard is given.
    run_fleet(root, "count", args.shards, history, empty)
    cells = [Cell(suite, mode) for mode in modes]
    for repetition in range(args.repeat):
        shift = repetition % len(cells)
        for cell in cells[shift:] + cells[:shift]:
            given = empty if cell.mode == "shoal-no-history" else history
            out = root / "runs" / f"{next(counter)}_{cell.mode}"
            cell.fleets.append(run_fleet(root, cell.mode, args.shards, out, given))
        print(f"  {suite}: repetition {repetition + 1}/{args.repeat} done", flush=True)
    return cells


def table(cells: list[Cell], shards: int) -> list[str]:
    heads = ["test time s", "longest shard test time s", "longest / share", "longest wall s"]
    heads += ["bound s", "fleet D"]
    figures = ["work_s", "longest_work_s", "longest_share", "wall_s", "bound_s", "d"]
    lines = [
        f"| suite | mode ({shards} shards) | "
        + " | ".join(heads)
        + " | longest / share vs shoal's |",
        "|---|---|" + "---:|" * (len(heads) + 1),
    ]
    for cell in cells:
        shoal = next(c for c in cells if c.suite == cell.suite and c.mode == "shoal")
        ratio = cell.median("longest_share") / shoal.median("longest_share")
        values = " | ".join(f"{cell.median(f):.2f}" for f in figures)
        lines.append(f"| {cell.suite} | {cell.mode} | {values} | {ratio:.2f}x |")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--shards", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2, help="timed fleet runs of each mode")
    parser.add_argument("--long", type=float, nargs="+", default=[6.0, 9.0, 7.5])
    parser.add_argument("--short", type=int, default=900)
    parser.add_argument("--short-ms", type=float, default=20.0)
    parser.add_argument("--fixture-modules", type=int, default=3, help="0: no grouping suite")
    parser.add_argument("--fixture-tests", type=int, default=40)
    parser.add_argument("--fixture-s", type=float, default=1.5)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = sum(args.long) + args.short * args.short_ms / 1000
    print(f"machine: {machine()}")
    print(
        f"suite: {len(args.long)} tests of {', '.join(f'{s:g}' for s in args.long)} s and "
        f"{args.short} of {args.short_ms:g} ms ({work:.1f} s of test time), {args.shards} "
        f"shards at once, {args.repeat} fleet runs of each mode",
        flush=True,
    )
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="shoal-shard-") as tmp:
        root = Path(tmp) / "skewed"
        root.mkdir()
        write_suite(root, args.long, args.short, args.short_ms)
        (root / "probe" / f"{SPLIT_PLUGIN}.py").write_text(SPLIT_SOURCE)
        cells += measure(root, "skewed", ["count", "shoal", "shoal-no-history"], args)
        if args.fixture_modules:
            grouped = Path(tmp) / "fixtures"
            grouped.mkdir()
            write_suite(grouped, args.long, args.short, args.short_ms)
            (grouped / "probe" / f"{SPLIT_PLUGIN}.py").write_text(SPLIT_SOURCE)
            write_fixture_modules(grouped, args.fixture_modules, args.fixture_tests, args.fixture_s)
            print(
                f"grouping suite: the same plus {args.fixture_modules} modules of "
                f"{args.fixture_tests} x 20 ms tests sharing a {args.fixture_s:g} s module fixture",
                flush=True,
            )
            cells += measure(grouped, "fixtures", ["ungrouped", "shoal"], args)
    print("\nmedians over the fleet runs; share = test time / shards")
    print("\n".join(table(cells, args.shards)))
    for cell in cells:
        if cell.mode == "shoal":
            value = cell.median("longest_share")
            verdict = "meets" if value <= GOAL else "MISSES"
            print(
                f"{cell.suite}: shoal's longest shard is {value:.2f}x the share: {verdict} "
                f"the goal <= {GOAL}; fleet D {cell.median('d'):.2f}"
            )
    print(f"machine: {machine()}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
