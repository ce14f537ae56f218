"""Scheduling: distance to the limit (D) of xdist ``load``, ``worksteal`` and shoal's order.

A synthetic skewed suite is written to a temporary project with no ``[tool.shoal.databases]``
(nothing is provisioned): a module of a few multi-second tests (``--long``, default 6, 9
and 7.5 s) and ``--short`` tests of ``--short-ms`` ms (default 900 x 20 ms) spread over
six modules collected before it. Every test sleeps, so the workers need no CPU while
tests run and ``-n 4`` is meaningful on 2 cores (start-up still costs CPU).

Why that size: xdist itself costs time no order can remove (at ``-n 2`` here: ~0.5 s to
start the workers, ~1.7 ms between two tests, ~0.1 s to stop them; the ``xdist`` mode
measures it). For a suite with a 7 s bound that alone is D 1.11; for the 20 s bound of
the default suite, D 1.07. ``--long 2 3 2.5 --short 300`` gives the smaller suite.

Each run is ``python -m pytest -n W`` plus, per mode:

- xdist: ``--dist worksteal -p no:shoal``, shoal not loaded at all; a small probe plugin
  takes the same timestamps shoal's report takes. What xdist costs on its own.
- load: ``--dist load --shoal-order=none --shoal-report`` (plain xdist order)
- worksteal: ``--dist worksteal --shoal-order=none --shoal-report`` (plain xdist order;
  shoal run's default distribution)
- shoal: ``--dist worksteal --shoal-report`` with shoal's duration order (history: the
  reports so far)
- shoal-load: ``--dist load --shoal-report`` with shoal's duration order

One untimed warm-up run (plain worksteal) writes the first history and warms caches. The
modes are then interleaved, rotating every repetition (``--repeat``, default 3), for each
worker count (``--workers``, default 2 4). D and its breakdown come from each run's own
report (``shoal.schedule.distance``): ``D = wall / max(longest test, test time / W)``,
wall from session start to session end, so worker start-up and teardown count. "D tests"
leaves those two out (``1 + (idle + imbalance) / bound``): the part of D an order can
change. Reported per mode: the medians over the repetitions. Goal: shoal's
D <= 1.10. "floor" is the D a perfect order would reach on xdist alone: 1 + (start-up +
idle + teardown of the xdist mode) / bound. "process s" is the pytest process from start
to exit, as this script times it: ``worksteal`` minus ``xdist`` (same distribution, same
order) is what loading shoal costs, including what its controller does before the first
timestamp a report can take.

Run (from the repository root)::

    .venv/bin/python bench/schedule.py [--workers 2 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import machine

from shoal import naming
from shoal.report import RunReport, TestResult, Versions, list_reports, read_report
from shoal.schedule import Distance, distance

GOAL_D = 1.10
SHORT_MODULES = 6
PROBE = "schedule_probe"  # the plugin module of the xdist mode
MODES: dict[str, list[str]] = {
    "xdist": ["--dist", "worksteal", "-p", "no:shoal", "-p", PROBE],
    "load": ["--dist", "load", "--shoal-order=none", "--shoal-report"],
    "worksteal": ["--dist", "worksteal", "--shoal-order=none", "--shoal-report"],
    "shoal": ["--dist", "worksteal", "--shoal-report"],
    "shoal-load": ["--dist", "load", "--shoal-report"],
}
BASE_ARGS = ["-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-q"]
# Takes shoal's report timestamps without shoal: session start when the controller is
# configured, each test's start of setup and end of teardown as the controller receives
# them, session end when the session finishes.
PROBE_SOURCE = """\
import json, os, time
import pytest

_run = {"tests": {}, "workers": 1}


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    _run["started"] = time.time()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    _run["workers"] = int(node.workerinput["workercount"])


def pytest_runtest_logreport(report):
    if not hasattr(report, "node"):
        return  # a worker: the controller records its reports
    key = report.node.gateway.id + " " + report.nodeid
    test = _run["tests"].setdefault(key, {"start": report.start, "stop": report.stop})
    test["stop"] = max(test["stop"], report.stop)
    test[report.when] = report.duration


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    if not hasattr(session.config, "workerinput"):
        _run["finished"] = time.time()
        with open(os.environ["SCHEDULE_PROBE_OUT"], "w") as out:
            json.dump(_run, out)
"""
PYPROJECT = """\
[project]
name = "skewed-suite"
version = "0"

[tool.pytest.ini_options]
testpaths = ["tests"]

[tool.shoal]
reports_dir = "reports"
"""


@dataclass
class Cell:
    mode: str
    workers: int
    runs: list[Distance] = field(default_factory=list)
    # Process start to exit, as this script sees it: imports and settings included,
    # which happen before any report or probe can take its first timestamp.
    process_s: list[float] = field(default_factory=list)

    def median(self, figure: str) -> float:
        if figure == "process_s":
            return statistics.median(self.process_s)
        return statistics.median(_figure(d, figure) for d in self.runs)


def _figure(d: Distance, figure: str) -> float:
    if figure == "d_tests":
        # The part of D the order can change: start-up (processes, imports, collection)
        # and teardown happen whatever the order; idle and imbalance do not.
        return 1 + (d.idle_s + d.imbalance_s) / d.bound_s
    if figure == "floor":
        return 1 + (d.startup_s + d.idle_s + d.teardown_s) / d.bound_s
    return float(getattr(d, figure))


def write_suite(root: Path, longs: list[float], shorts: int, short_ms: float) -> None:
    (root / "pyproject.toml").write_text(PYPROJECT)
    tests = root / "tests"
    tests.mkdir()
    per_module = -(-shorts // SHORT_MODULES)
    for m in range(SHORT_MODULES):
        count = max(0, min(per_module, shorts - m * per_module))
        (tests / f"test_fast_{m}.py").write_text(
            textwrap.dedent(f"""\
                import time

                import pytest


                @pytest.mark.parametrize("n", range({count}))
                def test_fast(n):
                    time.sleep({short_ms / 1000!r})
                """)
        )
    # Collected last, as a module of slow integration tests often is.
    (tests / "test_slow.py").write_text(
        textwrap.dedent(f"""\
            import time

            import pytest


            @pytest.mark.parametrize("seconds", {longs!r})
            def test_slow(seconds):
                time.sleep(seconds)
            """)
    )
    probe = root / "probe"
    probe.mkdir()
    (probe / f"{PROBE}.py").write_text(PROBE_SOURCE)


def clean_env() -> dict[str, str]:
    """Without an outer run's namespace or an outer xdist worker's variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("SHOAL_", "PYTEST_"))}


def run_once(root: Path, workers: int, mode: str) -> tuple[Distance, float]:
    before = {entry.path for entry in list_reports(root / "reports")}
    argv = [sys.executable, "-m", "pytest", "-n", str(workers), *MODES[mode], *BASE_ARGS]
    env = clean_env()
    probe_out = root / "probe" / "run.json"
    probe_out.unlink(missing_ok=True)
    if mode == "xdist":
        paths = [str(root / "probe"), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        env["SCHEDULE_PROBE_OUT"] = str(probe_out)
    began = time.perf_counter()
    done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True)
    process_s = time.perf_counter() - began
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()
        raise SystemExit(f"{mode} -n {workers} exited {done.returncode}:\n{output[-3000:]}")
    if mode == "xdist":
        return probe_distance(json.loads(probe_out.read_text())), process_s
    (new,) = [e.path for e in list_reports(root / "reports") if e.path not in before]
    distance = read_report(new).distance
    if distance is None:
        raise SystemExit(f"{mode} -n {workers}: the report {new} has no distance")
    return distance, process_s


def probe_distance(run: dict[str, Any]) -> Distance:
    """The probe's timestamps, measured with shoal's own :func:`distance`."""
    tests = []
    for key, t in run["tests"].items():
        worker, nodeid = key.split(" ", 1)
        phases = {"setup_s": t.get("setup", 0.0), "teardown_s": t.get("teardown", 0.0)}
        tests.append(
            TestResult(
                nodeid=nodeid,
                outcome="passed",
                worker=worker,
                duration_s=t.get("call", 0.0),
                start=t["start"],
                stop=t["stop"],
                **phases,
            )
        )
    report = RunReport(
        namespace=naming.new_namespace(os.getpid(), int(run["started"]), os.urandom(4)),
        args=(),
        versions=Versions(python="", pytest="", shoal=""),
        started=datetime.fromtimestamp(run["started"], UTC),
        finished=datetime.fromtimestamp(run["finished"], UTC),
        exit_status=0,
        tests=tuple(tests),
        worker_count=run["workers"],
    )
    measured = distance(report)
    if measured is None:
        raise SystemExit("xdist: the probe saw no test")
    return measured


def table(cells: list[Cell]) -> list[str]:
    figures = ["process_s", "wall_s", "bound_s", "d", "d_tests", "startup_s", "idle_s"]
    figures += ["imbalance_s", "teardown_s", "tail_s"]
    heads = ["process s", "wall s", "bound s", "D", "D tests", "start-up s", "idle s"]
    heads += ["imbalance s", "teardown s", "tail s"]
    lines = [
        "| W | mode | " + " | ".join(heads) + " | D / shoal's |",
        "|---|---|" + "---:|" * (len(heads) + 1),
    ]
    for cell in cells:
        shoal = next(c for c in cells if c.workers == cell.workers and c.mode == "shoal")
        values = [f"{cell.median(f):.2f}" for f in figures]
        ratio = cell.median("d") / shoal.median("d")
        lines.append(
            f"| {cell.workers} | {cell.mode} | " + " | ".join(values) + f" | {ratio:.2f}x |"
        )
    return lines


def verdicts(cells: list[Cell]) -> list[str]:
    lines = []
    for cell in cells:
        if cell.mode != "shoal":
            continue
        d = cell.median("d")
        verdict = "meets" if d <= GOAL_D else "MISSES"
        lines.append(
            f"-n {cell.workers}: shoal D {d:.2f} {verdict} the goal D <= {GOAL_D}"
            f" (D tests {cell.median('d_tests'):.2f}); all D: "
            + ", ".join(f"{c.mode} {c.median('d'):.2f}" for c in cells if c.workers == cell.workers)
        )
        same = {c.mode: c for c in cells if c.workers == cell.workers}
        if "xdist" in same:
            line = (
                f"-n {cell.workers}: xdist's own floor (a perfect order, shoal not loaded) "
                f"D {same['xdist'].median('floor'):.2f}"
            )
            if "worksteal" in same:
                # The same distribution and order, with and without shoal: the difference
                # in process time is what loading shoal costs, imports included.
                cost = same["worksteal"].median("process_s") - same["xdist"].median("process_s")
                line += f"; loading shoal (order off) costs {cost:+.2f} s of process time"
            lines.append(line)
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each mode")
    parser.add_argument("--long", type=float, nargs="+", default=[6.0, 9.0, 7.5])
    parser.add_argument("--short", type=int, default=900, help="number of short tests")
    parser.add_argument("--short-ms", type=float, default=20.0)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = parser.parse_args(argv)
    if "shoal" not in args.modes:
        parser.error("--modes must include shoal (the table compares against it)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = sum(args.long) + args.short * args.short_ms / 1000
    print(f"machine: {machine()}")
    print(
        f"suite: {len(args.long)} tests of {', '.join(f'{s:g}' for s in args.long)} s and "
        f"{args.short} of {args.short_ms:g} ms ({work:.1f} s of test time); "
        f"{args.repeat} runs of each mode at -n {', '.join(map(str, args.workers))}",
        flush=True,
    )
    cells = [Cell(mode, w) for w in args.workers for mode in args.modes]
    with tempfile.TemporaryDirectory(prefix="shoal-schedule-") as tmp:
        root = Path(tmp)
        write_suite(root, args.long, args.short, args.short_ms)
        run_once(root, args.workers[0], "worksteal")  # warm-up: the first history
        for repetition in range(args.repeat):
            for workers in args.workers:
                row = [c for c in cells if c.workers == workers]
                shift = repetition % len(row)
                for cell in row[shift:] + row[:shift]:
                    measured, process_s = run_once(root, workers, cell.mode)
                    cell.runs.append(measured)
                    cell.process_s.append(process_s)
            print(f"  repetition {repetition + 1}/{args.repeat} done", flush=True)
    print("\nmedians over the repetitions; D = wall / bound; bound = max(longest, work / W)")
    print("\n".join(table(cells)))
    print("\n".join(verdicts(cells)))
    print(f"machine: {machine()}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
