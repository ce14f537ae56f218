"""shoal's overhead: loading its plugin, and ``shoal run``, against ``pytest -n 2`` without it.

A trivial suite (``--tests`` no-op tests, default 20) is written to a temporary project
whose pyproject.toml has no ``[tool.shoal]`` table, so shoal provisions nothing. Four
commands are timed end to end (process start to exit), interleaved and repeated
(``--repeat``, default 7; the order rotates every repetition, after one untimed warm-up
of each):

- no shoal: ``python -m pytest -n 2 -p no:cacheprovider -p no:shoal``, the base
- pytest: the same with shoal's plugin loaded, as in every project that has it installed
- run --no-sweep: ``python -m shoal run --no-sweep -- -n 2 -p no:cacheprovider``
- run: ``python -m shoal run -- -n 2 -p no:cacheprovider``; with no databases configured,
  the sweep alongside the run covers the ``default`` database on the embedded server

The suite's conftest.py records when pytest's controller process reaches
``pytest_configure`` and ``pytest_unconfigure``, which splits each run into start (spawn
to configure: for ``shoal run``, its own process, imports and sweep come first), body
(xdist workers, tests, report) and exit.

Reported: median and min of the total wall time, the median of each phase and of the CPU
time (user + sys of the whole process tree), and the overhead against pytest without shoal
(goal: at most 0.1 s) as medians of per-repetition differences (each pair ran back to back): of
the total, of the start phase (short, so much less disturbed by a busy machine), and of
CPU time. For scale, ``python -m shoal run --help`` is timed too: the start-up of the
``shoal`` process alone (interpreter and imports).

Run (from the repository root)::

    .venv/bin/python bench/run_overhead.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import bytecode_env, machine

GOAL_S = 0.1
PYTEST_ARGS = ["-n", "2", "-p", "no:cacheprovider"]
# Where the suite's conftest.py appends its marks; not a SHOAL_ variable, which would count
# as configuring shoal.
TIMES_ENV = "BENCH_SHOAL_TIMES"
CONFTEST = """\
import os
import time


def _mark(config, what):
    if not hasattr(config, "workerinput"):  # the controller, not an xdist worker
        with open(os.environ["BENCH_SHOAL_TIMES"], "a") as f:
            f.write(f"{what} {time.time()!r}\\n")


def pytest_configure(config):
    _mark(config, "configure")


def pytest_unconfigure(config):
    _mark(config, "unconfigure")
"""
PYPROJECT = """\
[project]
name = "trivial-suite"
version = "0"

[tool.pytest.ini_options]
testpaths = ["tests"]
"""


@dataclass
class Command:
    label: str
    argv: list[str]
    reference: bool = False  # for scale only: not a way to run the suite
    times: list[float] = field(default_factory=list)  # wall seconds, one per repetition
    cpu: list[float] = field(default_factory=list)  # user+sys of the whole process tree
    start: list[float] = field(default_factory=list)  # spawn -> controller's pytest_configure
    body: list[float] = field(default_factory=list)  # configure -> unconfigure
    exit: list[float] = field(default_factory=list)  # unconfigure -> the process tree is gone
    notes: set[str] = field(default_factory=set)


def commands() -> list[Command]:
    python = sys.executable
    return [
        Command("no shoal", [python, "-m", "pytest", *PYTEST_ARGS, "-p", "no:shoal"]),
        Command("pytest", [python, "-m", "pytest", *PYTEST_ARGS]),
        Command("run --no-sweep", [python, "-m", "shoal", "run", "--no-sweep", "--", *PYTEST_ARGS]),
        Command("run", [python, "-m", "shoal", "run", "--", *PYTEST_ARGS]),
        Command("shoal run --help", [python, "-m", "shoal", "run", "--help"], reference=True),
    ]


def write_project(root: Path, tests: int) -> None:
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "tests").mkdir()
    body = "\n\n".join(f"def test_noop_{i:03d}() -> None:\n    pass\n" for i in range(tests))
    (root / "tests" / "test_trivial.py").write_text(body)
    (root / "conftest.py").write_text(CONFTEST)


def clean_env() -> dict[str, str]:
    """The environment without shoal's own variables (an outer run's namespace), and with
    bytecode written (see :func:`common.bytecode_env`)."""
    return bytecode_env({k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")})


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Sample:
    wall: float
    cpu: float
    phases: tuple[float, float, float] | None  # start, body, exit; None without pytest


def run_once(command: Command, cwd: Path, env: dict[str, str]) -> Sample:
    """One run; CPU counts every descendant that was waited for."""
    marks = cwd / "marks.txt"
    marks.unlink(missing_ok=True)
    cpu, spawned, started = children_cpu(), time.time(), time.perf_counter()
    done = subprocess.run(
        command.argv,
        cwd=cwd,
        env={**env, TIMES_ENV: str(marks)},
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed, ended, cpu = time.perf_counter() - started, time.time(), children_cpu() - cpu
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()
        if "--shoal-report" in output and "unrecognized arguments" in output:
            raise SystemExit(
                f"{command.label}: pytest does not know --shoal-report yet; retry later.\n{output}"
            )
        raise SystemExit(f"{command.label} exited {done.returncode}:\n{output[-3000:]}")
    command.notes.update(
        line.strip() for line in done.stderr.splitlines() if line.startswith("shoal:")
    )
    seen = dict(line.split() for line in marks.read_text().splitlines()) if marks.exists() else {}
    phases = None
    if "configure" in seen and "unconfigure" in seen:
        configure, unconfigure = float(seen["configure"]), float(seen["unconfigure"])
        phases = (configure - spawned, unconfigure - configure, ended - unconfigure)
    return Sample(elapsed, cpu, phases)


def paired(values: list[float], base: list[float]) -> float:
    """Median of the per-repetition differences (each pair ran back to back)."""
    return statistics.median(v - b for v, b in zip(values, base, strict=True))


def med(values: list[float]) -> str:
    return f"{statistics.median(values):.3f}" if values else "—"


def report(measured: list[Command]) -> list[str]:
    base = measured[0]
    lines = [
        f"{'command':<16} {'total med s':>11} {'total min s':>11} {'start med s':>11}"
        f" {'body med s':>10} {'exit med s':>10} {'CPU med s':>9}"
        f" {'overhead total':>14} {'overhead start':>14} {'overhead CPU':>12}"
    ]
    for command in measured:
        plain = command is base or command.reference
        over = "—" if plain else f"{paired(command.times, base.times):+.3f}"
        over_start = "—" if plain else f"{paired(command.start, base.start):+.3f}"
        over_cpu = "—" if plain else f"{paired(command.cpu, base.cpu):+.3f}"
        lines.append(
            f"{command.label:<16} {med(command.times):>11} {min(command.times):>11.3f}"
            f" {med(command.start):>11} {med(command.body):>10} {med(command.exit):>10}"
            f" {med(command.cpu):>9} {over:>14} {over_start:>14} {over_cpu:>12}"
        )
    lines.append(
        "overhead: median of per-repetition differences from pytest without shoal, in seconds;"
        " start = spawn -> pytest_configure"
    )
    for command in measured[1:]:
        if command.reference:
            continue
        overhead = paired(command.times, base.times)
        start = paired(command.start, base.start)
        verdict = "within" if max(overhead, start) <= GOAL_S else "OVER"
        lines.append(
            f"{command.label}: overhead {overhead:+.3f} s total, {start:+.3f} s start,"
            f" {paired(command.cpu, base.cpu):+.3f} s CPU: {verdict} the {GOAL_S} s goal"
        )
    for command in measured:
        lines += [f"{command.label} said: {note}" for note in sorted(command.notes)]
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed runs of each command")
    parser.add_argument("--tests", type=int, default=20, help="no-op tests in the suite")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    measured = commands()
    env = clean_env()
    print(f"machine: {machine()}")
    print(f"python: {sys.executable}; {args.tests} no-op tests; {args.repeat} timed runs each")
    print("commands: " + "; ".join(" ".join(c.argv[1:]) for c in measured), flush=True)
    with tempfile.TemporaryDirectory(prefix="shoal-overhead-") as tmp:
        root = Path(tmp)
        write_project(root, args.tests)
        for command in measured:  # warm-up: imports compiled, files cached, server running
            run_once(command, root, env)
        for repetition in range(args.repeat):
            shift = repetition % len(measured)
            for command in measured[shift:] + measured[:shift]:
                sample = run_once(command, root, env)
                command.times.append(sample.wall)
                command.cpu.append(sample.cpu)
                if sample.phases is not None:
                    command.start.append(sample.phases[0])
                    command.body.append(sample.phases[1])
                    command.exit.append(sample.phases[2])
            print(f"  repetition {repetition + 1}/{args.repeat} done", flush=True)
    print("\n" + "\n".join(report(measured)))
    print(f"goal: overhead at most {GOAL_S} s; machine: {machine()}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
