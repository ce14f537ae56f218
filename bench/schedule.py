"""Scheduling: distance to the limit (D) of xdist ``load``, ``worksteal`` and shoal's order.

A synthetic skewed suite is written to a temporary project with no ``[tool.shoal.databases]``
(nothing is provisioned): a module of a few multi-second tests (``--long``, default 2.0,
3.0 and 2.5 s) and ``--short`` tests of ``--short-ms`` ms (default 300 x 20 ms) spread over
six modules collected before it. Every test sleeps, so the workers need no CPU while
tests run and ``-n 4`` is meaningful on 2 cores (start-up still costs CPU).

Each run is ``python -m pytest -n W --shoal-report`` plus, per mode:

- load: ``--dist load --shoal-order=none`` (plain xdist)
- worksteal: ``--dist worksteal --shoal-order=none`` (plain xdist; shoal run's default)
- shoal: ``--dist worksteal`` with shoal's duration order (history: the reports so far)
- shoal-load: ``--dist load`` with shoal's duration order

One untimed warm-up run (plain worksteal) writes the first history and warms caches. The
modes are then interleaved, rotating every repetition (``--repeat``, default 3), for each
worker count (``--workers``, default 2 4). D and its breakdown come from each run's own
report (``shoal.schedule.distance``): ``D = wall / max(longest test, test time / W)``,
wall from session start to session end, so worker start-up and teardown count. "D tests"
leaves those two out (``1 + (idle + imbalance) / bound``): the part of D an order can
change. Reported per mode: the medians over the repetitions. Goal (issue 5): shoal's
D <= 1.10.

Run (from the repository root)::

    .venv/bin/python bench/schedule.py [--workers 2 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from shoal.report import list_reports, read_report
from shoal.schedule import Distance

GOAL_D = 1.10
SHORT_MODULES = 6
MODES: dict[str, list[str]] = {
    "load": ["--dist", "load", "--shoal-order=none"],
    "worksteal": ["--dist", "worksteal", "--shoal-order=none"],
    "shoal": ["--dist", "worksteal"],
    "shoal-load": ["--dist", "load"],
}
BASE_ARGS = ["-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-q", "--shoal-report"]
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

    def median(self, figure: str) -> float:
        return statistics.median(_figure(d, figure) for d in self.runs)


def _figure(d: Distance, figure: str) -> float:
    if figure == "d_tests":
        # The part of D the order can change: start-up (processes, imports, collection)
        # and teardown happen whatever the order; idle and imbalance do not.
        return 1 + (d.idle_s + d.imbalance_s) / d.bound_s
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


def clean_env() -> dict[str, str]:
    """Without an outer run's namespace or an outer xdist worker's variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("SHOAL_", "PYTEST_"))}


def run_once(root: Path, workers: int, mode: str) -> Distance:
    before = {entry.path for entry in list_reports(root / "reports")}
    argv = [sys.executable, "-m", "pytest", "-n", str(workers), *MODES[mode], *BASE_ARGS]
    done = subprocess.run(argv, cwd=root, env=clean_env(), capture_output=True, text=True)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()
        raise SystemExit(f"{mode} -n {workers} exited {done.returncode}:\n{output[-3000:]}")
    (new,) = [e.path for e in list_reports(root / "reports") if e.path not in before]
    distance = read_report(new).distance
    if distance is None:
        raise SystemExit(f"{mode} -n {workers}: the report {new} has no distance")
    return distance


def machine() -> str:
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    return f"{os.cpu_count()} cores, load average {load}"


def table(cells: list[Cell]) -> list[str]:
    figures = ["wall_s", "bound_s", "d", "d_tests", "startup_s", "idle_s", "imbalance_s"]
    figures += ["teardown_s", "tail_s"]
    heads = ["wall s", "bound s", "D", "D tests", "start-up s", "idle s", "imbalance s"]
    heads += ["teardown s", "tail s"]
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
        )  # fmt: skip
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each mode")
    parser.add_argument("--long", type=float, nargs="+", default=[2.0, 3.0, 2.5])
    parser.add_argument("--short", type=int, default=300, help="number of short tests")
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
                    cell.runs.append(run_once(root, workers, cell.mode))
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
