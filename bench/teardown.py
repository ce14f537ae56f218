"""Teardown benchmark: the time from a run's last test to its process exit, before and after
workers rename their schemas for a detached reaper instead of dropping them.

Four ``shoal run -- -n 2`` of the same 40-test suite start at once against one database
(``shoal_bench_teardown``), each worker claiming a 220-table schema (the generated
metadata of ``bench/provision.py``) from a warm pool filled off the clock. Per run, from
its report and its exit as this script saw it: last test → process exit, split into last
test → the report's ``finished`` and ``finished`` → exit; and, for the start-up, the
process's launch → its first test. The suites run with pytest-xdist and shoal as their
only plugins (``common.other_plugins``): the rest of this checkout's test environment
(hypothesis, schemathesis, pytest-django) is no part of what a run of this suite needs.

Two modes, interleaved round by round in the same invocation of this script:

- before: shoal as it was before the change, imported from ``--before`` (a checkout's
  ``src``, e.g. ``git worktree add <dir> <rev>``) through PYTHONPATH: each worker drops its
  schemas inside DDL slots before it exits.
- after: this checkout: each worker renames its schemas, and one detached reaper per run
  drops them after the run has exited.
- xdist alone (the floor under both): four ``pytest -p no:shoal -n 2`` at once of a suite
  of the same shape with no database (each test sleeps as long), a small conftest taking
  the last test's end from pytest's own reports. What it measures between the last test
  and the exit is xdist's: shutting its workers down and waiting for them to exit.

Between rounds, the script waits until the refills have filled the pool again and nothing
is left to drop, so that no round pays for the one before. After the last round of
"after" it reports how long the reapers took to leave nothing behind.

Run (from the repository root)::

    git worktree add /path/to/old <rev-before-the-change>
    .venv/bin/python bench/teardown.py [--before /path/to/old/src] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg
from common import bytecode_env, machine, other_plugins

from shoal.embedded import EmbeddedServer

DATABASE = "shoal_bench_teardown"
BENCH = Path(__file__).resolve().parent
GOAL_S = 0.3
OUTLIER_S = 2.0  # a tail this long is printed with its parts
FLOOR = "xdist alone"
RUNS = 4  # concurrent runs (--runs); the warm pool holds one schema per worker of them
WORKERS = 2
PYTEST_ARGS = ("-n", str(WORKERS), "-p", "no:cacheprovider", "-q", *other_plugins())
MODELS = f"""
import sys
sys.path.insert(0, {str(BENCH)!r})
from provision import build_metadata  # the 220-table metadata of the provisioning bench

metadata = build_metadata({{tables}})
"""
TESTS = """
import time

def _probe(shoal_databases, n):
    with shoal_databases["app"].connect() as conn:
        conn.execute(f"select count(*) from t{n % 220:03d}").fetchone()
    time.sleep(0.05)
"""


# The floor's suite: the same 40 tests with no database, and the controller's record of
# when the last one ended (pytest's own report stamps, as shoal's report takes them).
FLOOR_CONFTEST = """
import json, time

FIRST, LAST = [], []

def pytest_runtest_logreport(report):
    FIRST.append(report.start)
    LAST.append(report.stop)

def pytest_unconfigure(config):
    if not hasattr(config, "workerinput"):
        with open("last_test.json", "w") as out:
            json.dump({"first": min(FIRST, default=0.0), "last": max(LAST, default=0.0)}, out)
"""


@dataclass
class Sample:
    mode: str
    start_to_first: float  # the process started → its first test began
    last_to_exit: float
    last_to_finished: float
    finished_to_exit: float
    tail: dict[str, float | None] | None


@dataclass
class Mode:
    name: str
    pythonpath: str
    samples: list[Sample] = field(default_factory=list)


def write_project(root: Path, url: str, tables: int, tests: int, pool: int) -> None:
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        "\n".join(
            [
                "[tool.pytest.ini_options]",
                'pythonpath = ["."]',
                "",
                "[tool.shoal]",
                f"pool_size = {pool}",
                "[tool.shoal.databases.app]",
                f"url = {json.dumps(url)}",
                'setup = "models:metadata"',
                "",
            ]
        )
    )
    (root / "models.py").write_text(MODELS.replace("{tables}", str(tables)))
    body = TESTS + "".join(
        f"\n\ndef test_{i:02d}(shoal_databases):\n    _probe(shoal_databases, {i})\n"
        for i in range(tests)
    )
    (root / "test_suite.py").write_text(body)


def write_floor_project(root: Path, tests: int) -> None:
    root.mkdir(parents=True)
    (root / "conftest.py").write_text(FLOOR_CONFTEST)
    body = "import time\n" + "".join(
        f"\n\ndef test_{i:02d}():\n    time.sleep(0.05)\n" for i in range(tests)
    )
    (root / "test_suite.py").write_text(body)


def env_for(pythonpath: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOAL_", "PG"))}
    if "SHOAL_HOME" in os.environ:
        env["SHOAL_HOME"] = os.environ["SHOAL_HOME"]
    env["PYTHONPATH"] = pythonpath
    return bytecode_env(env)


def shoal(args: list[str], cwd: Path, pythonpath: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        cwd=cwd,
        env=env_for(pythonpath),
        capture_output=True,
        text=True,
        check=False,
    )


def which_shoal(pythonpath: str) -> str:
    code = "import shoal, os; print(os.path.dirname(shoal.__file__))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env_for(pythonpath),
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def counts(url: str) -> dict[str, int]:
    """Schemas in the bench database by kind: ready pool, building, worker, to drop."""
    with psycopg.connect(url, autocommit=True, application_name="shoal_bench_teardown") as conn:
        rows = conn.execute("SELECT nspname FROM pg_namespace").fetchall()
    names = [str(r[0]) for r in rows]
    prefixes = {"ready": "shoalpool_", "building": "shoalbuild_", "worker": "test_"}
    found = {kind: sum(n.startswith(p) for n in names) for kind, p in prefixes.items()}
    found["to_drop"] = sum(n.startswith("shoaldrop_") for n in names)
    return found


def settle(url: str, pool: int, timeout: float = 600) -> float:
    """Wait until the pool is full again and nothing is left to drop; seconds waited."""
    started = time.monotonic()
    while True:
        found = counts(url)
        if (
            found["ready"] >= pool
            and found["building"] == 0
            and found["worker"] == 0
            and found["to_drop"] == 0
        ):
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise SystemExit(f"the database did not settle within {timeout:.0f} s: {found}")
        time.sleep(0.5)


def until_clean(url: str, timeout: float = 300) -> float:
    """Seconds until no worker schema and no to-drop schema is left (the reapers' work)."""
    started = time.monotonic()
    while True:
        found = counts(url)
        if found["worker"] == 0 and found["to_drop"] == 0:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise SystemExit(f"schemas left behind after {timeout:.0f} s: {found}")
        time.sleep(0.1)


def latest_report(project: Path) -> dict[str, object]:
    reports = sorted((project / ".shoal" / "reports").glob("*_*.json"))
    return dict(json.loads(reports[-1].read_text()))


def seconds(stamp: object) -> float:
    return datetime.fromisoformat(str(stamp)).timestamp()


def one_round(mode: Mode, projects: list[Path]) -> list[Sample]:
    """The four runs at once; a sample per run."""
    exits: dict[int, float] = {}
    launched: list[float] = []
    procs = []
    for project in projects:
        for old in (project / ".shoal" / "reports").glob("*.json"):
            old.unlink()
    floor = mode.name == FLOOR
    command = (
        ["-m", "pytest", "-p", "no:shoal", *PYTEST_ARGS]
        if floor
        else ["-m", "shoal", "run", "--no-sweep", "--", *PYTEST_ARGS]
    )
    for project in projects:
        launched.append(time.time())
        procs.append(
            subprocess.Popen(
                [sys.executable, *command],
                cwd=project,
                env=env_for(mode.pythonpath),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )

    def wait(i: int, proc: subprocess.Popen[str]) -> None:
        proc.wait()
        exits[i] = time.time()

    waiters = [threading.Thread(target=wait, args=(i, p)) for i, p in enumerate(procs)]
    for waiter in waiters:
        waiter.start()
    for waiter in waiters:
        waiter.join()
    samples = []
    for i, (project, proc) in enumerate(zip(projects, procs, strict=True)):
        output = proc.stdout.read() if proc.stdout else ""
        if proc.returncode != 0:
            raise SystemExit(f"{mode.name}: a run exited {proc.returncode}:\n{output[-3000:]}")
        if floor:
            marks = json.loads((project / "last_test.json").read_text())
            first, last = float(marks["first"]), float(marks["last"])
            samples.append(Sample(mode.name, first - launched[i], exits[i] - last, 0.0, 0.0, None))
            continue
        report = latest_report(project)
        tests = report["tests"]
        assert isinstance(tests, list)
        first = min(float(t["start"]) for t in tests)
        last = max(float(t["stop"]) for t in tests)
        finished = seconds(report["finished"])
        tail = report.get("tail")
        if exits[i] - last > OUTLIER_S:  # say where a long tail went, while the report is here
            print(
                f"  {mode.name}: run {i}: last test→exit {exits[i] - last:.2f} s, the report's"
                f" finished at +{finished - last:.2f} s, its tail figures {tail}",
                flush=True,
            )
        samples.append(
            Sample(
                mode.name,
                start_to_first=first - launched[i],
                last_to_exit=exits[i] - last,
                last_to_finished=finished - last,
                finished_to_exit=exits[i] - finished,
                tail=dict(tail) if isinstance(tail, dict) else None,
            )
        )
    return samples


def med(values: list[float]) -> str:
    return f"{statistics.median(values):.3f}" if values else "—"


def report(modes: list[Mode]) -> list[str]:
    lines = [
        f"{'mode':<11} {'runs':>4} {'last test→exit med s':>20} {'max s':>6}"
        f" {'last test→finished med s':>24} {'finished→exit med s':>19}"
        f" {'start→first test med s':>22}"
    ]
    for mode in modes:
        s = mode.samples
        split = mode.name != FLOOR  # no report to split it at
        lines.append(
            f"{mode.name:<11} {len(s):>4} {med([x.last_to_exit for x in s]):>20}"
            f" {max(x.last_to_exit for x in s):>6.3f}"
            f" {med([x.last_to_finished for x in s]) if split else '—':>24}"
            f" {med([x.finished_to_exit for x in s]) if split else '—':>19}"
            f" {med([x.start_to_first for x in s]):>22}"
        )
    after = next((m for m in modes if m.name == "after"), None)
    if after is not None and after.samples:
        parts = ("teardown_s", "summary_s", "spawn_s", "exit_s")
        figures = {
            part: [float(x.tail[part] or 0) for x in after.samples if x.tail and x.tail.get(part)]
            for part in parts
        }
        lines.append(
            "after, the report's tail figures (medians, s): "
            + ", ".join(f"{part.removesuffix('_s')} {med(v)}" for part, v in figures.items())
        )
    before = next((m for m in modes if m.name == "before"), None)
    if before is not None and after is not None and before.samples and after.samples:
        b = statistics.median(x.last_to_exit for x in before.samples)
        a = statistics.median(x.last_to_exit for x in after.samples)
        verdict = "within" if a <= GOAL_S else "OVER"
        lines.append(
            f"last test→exit, median: before {b:.3f} s → after {a:.3f} s"
            f" ({b / a:.1f}x shorter): {verdict} the {GOAL_S} s goal"
        )
    floor = next((m for m in modes if m.name == FLOOR), None)
    if floor is not None and after is not None and floor.samples and after.samples:
        f = statistics.median(x.last_to_exit for x in floor.samples)
        a = statistics.median(x.last_to_exit for x in after.samples)
        lines.append(
            f"last test→exit, median: xdist alone {f:.3f} s, after {a:.3f} s: shoal adds"
            f" {a - f:+.3f} s to xdist's own"
        )
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--before", help="the src directory of the old shoal (a mode)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each mode")
    parser.add_argument("--tables", type=int, default=220)
    parser.add_argument("--tests", type=int, default=40)
    parser.add_argument("--runs", type=int, default=RUNS, help="concurrent runs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server = EmbeddedServer()
    server.ensure_running()
    server.ensure_database(DATABASE)
    url = server.url(DATABASE)
    here = str(BENCH.parent / "src")
    pool = args.runs * WORKERS
    modes = [Mode("after", here), Mode(FLOOR, here)]
    if args.before:
        modes.insert(0, Mode("before", str(Path(args.before).resolve())))
    print(f"machine: {machine()}")
    for mode in modes[:-1]:
        print(f"{mode.name}: shoal from {which_shoal(mode.pythonpath)}")
    print(
        f"{args.runs} concurrent `shoal run --no-sweep -- -n 2` of {args.tests} tests, "
        f"{args.tables}-table schema, warm pool of {pool}; {args.rounds} rounds of each mode",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="shoal-bench-teardown-") as tmp:
        projects = [Path(tmp) / f"run{i}" for i in range(args.runs)]
        floors = [Path(tmp) / f"floor{i}" for i in range(args.runs)]
        for project, floor in zip(projects, floors, strict=True):
            write_project(project, url, args.tables, args.tests, pool)
            write_floor_project(floor, args.tests)
        # Leftovers of an interrupted earlier invocation (the sweep's rules decide).
        shoal(["sweep"], projects[0], here)
        warmed = shoal(["pool", "warm", "--size", str(pool)], projects[0], here)
        if warmed.returncode != 0:
            raise SystemExit(f"shoal pool warm failed:\n{warmed.stdout}{warmed.stderr}")
        settle(url, pool)
        for round_ in range(args.rounds):
            for mode in modes if round_ % 2 == 0 else modes[::-1]:
                mode.samples += one_round(mode, floors if mode.name == FLOOR else projects)
                cleaned = until_clean(url)
                waited = settle(url, pool)
                print(
                    f"  round {round_ + 1} {mode.name}: last test→exit "
                    + ", ".join(f"{s.last_to_exit:.2f}" for s in mode.samples[-args.runs :])
                    + f" s; nothing left to drop {cleaned:.1f} s after the runs exited,"
                    + f" pool full again {waited:.1f} s later",
                    flush=True,
                )
        left = counts(url)
        shoal(["pool", "clear"], projects[0], here)
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n" + "\n".join(report(modes)))
    print(f"left in the bench database at the end (before pool clear): {left}")
    print(f"machine: {machine()}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
