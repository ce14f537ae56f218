"""Agent job service benchmark: per-job overhead, and workspace preparation strategies.

1. Overhead: ``--jobs`` no-op jobs (the agent is ``true``) posted at once to the app
   (in-process, through httpx's ASGI transport) at ``--capacity``; reported: job time from
   slot to finish (p50, p95: clone, checkout, run, diff summary, removal), throughput, and
   the same number of bare ``true`` processes at the same concurrency as the floor.
2. Workspaces: a ``--files``-file repository; one checkout made by ``git clone --local``
   of a bare base (what shoal does: hardlinked objects), by a plain clone (``file://``,
   objects copied through a pack), and by ``git worktree add`` on one shared repository.
   Each alone (``--repeat`` times, median) and ``--parallel`` at once (``--rounds``
   rounds): wall time, ratio to clone --local, and failed checkouts.
3. Start-up: ``--startup-jobs`` jobs of ``--job-ms`` posted at once at ``--capacity`` on a
   ``--startup-files``-file repository, each configuration in a fresh state directory:
   checkouts unbounded (as before the bound), bounded to the cores, then the warm pool
   filled before the jobs arrive at its default size (= capacity) and at the burst's
   size. Reported: the time from a job's slot to its agent's first instruction (p50,
   p95; the agent writes the time it started), throughput, and ratios to the
   bounded run without a pool.

Run (from the repository root)::

    .venv/bin/python bench/service.py                  # all three parts
    .venv/bin/python bench/service.py --only startup   # part 3 alone
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from shoal.service.app import create_app
from shoal.service.settings import load_serve_settings

Prepare = Callable[[Path, Path, str], list[str]]


@dataclass(frozen=True)
class Row:
    alone: float  # seconds, median
    parallel_wall: float  # seconds, median over rounds
    failures: int
    attempts: int
    example: str


def git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@b",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@b",
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)


def make_repo(path: Path, files: int) -> Path:
    path.mkdir(parents=True)
    git("init", "--quiet", "--initial-branch=main", cwd=path)
    for n in range(files):
        folder = path / f"pkg{n // 100:03d}"
        folder.mkdir(exist_ok=True)
        (folder / f"mod{n:05d}.py").write_text(f"VALUE_{n} = {n}\n" * 20)
    git("add", "--all", cwd=path)
    git("commit", "--quiet", "-m", "files", cwd=path)
    return path


# -- 1. per-job overhead -----------------------------------------------------------------


async def _overhead(work: Path, jobs: int, capacity: int, files: int) -> dict[str, float]:
    repo = make_repo(work / "small", files)
    settings = load_serve_settings(
        {
            "repo": str(repo),
            "agents": {"noop": ["true"]},
            "state_dir": work / "state",
            "max_concurrency": capacity,
            "max_queue_depth": jobs,
            "no_auth": True,
            "base_refresh_s": 3600,
        }
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://b") as client,
    ):
        started = time.perf_counter()
        answers = await asyncio.gather(
            *(client.post("/execute", json={"prompt": "noop"}) for _ in range(jobs))
        )
        assert all(a.status_code == 202 for a in answers), answers[0].text
        while True:
            health = (await client.get("/health")).json()
            if health["active"] == 0 and health["queued"] == 0:
                break
            await asyncio.sleep(0.01)
        wall = time.perf_counter() - started
        records = (await client.get("/jobs", params={"limit": 500})).json()["jobs"]
    assert len(records) == jobs
    failed = [r for r in records if r["status"] != "completed"]
    spans = sorted(r["finished_at"] - r["started_at"] for r in records)
    floor = await _bare_processes(jobs, capacity)
    return {
        "wall": wall,
        "p50": statistics.median(spans) * 1000,
        "p95": spans[int(len(spans) * 0.95) - 1] * 1000,
        "failed": len(failed),
        "throughput": jobs / wall,
        "floor_throughput": jobs / floor,
    }


async def _bare_processes(jobs: int, capacity: int) -> float:
    slots = asyncio.Semaphore(capacity)

    async def one() -> None:
        async with slots:
            proc = await asyncio.create_subprocess_exec("true")
            await proc.wait()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(jobs)))
    return time.perf_counter() - started


# -- 2. workspace preparation ------------------------------------------------------------


def clone_local(base: Path, shared: Path, dest: Path, name: str) -> list[list[str]]:
    return [
        ["git", "clone", "--local", "--no-checkout", "--quiet", str(base), str(dest)],
        ["git", "-C", str(dest), "checkout", "--quiet", "-b", name, "HEAD"],
    ]


def plain_clone(base: Path, shared: Path, dest: Path, name: str) -> list[list[str]]:
    return [["git", "clone", "--quiet", f"file://{base}", str(dest)]]


def worktree_add(base: Path, shared: Path, dest: Path, name: str) -> list[list[str]]:
    return [["git", "-C", str(shared), "worktree", "add", "--quiet", "-b", name, str(dest)]]


STRATEGIES = {
    "clone --local": clone_local,
    "plain clone": plain_clone,
    "worktree add": worktree_add,
}


def _prepare(strategy: str, base: Path, shared: Path, dest: Path, name: str) -> tuple[float, str]:
    started = time.perf_counter()
    for argv in STRATEGIES[strategy](base, shared, dest, name):
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            return time.perf_counter() - started, done.stderr.strip().splitlines()[-1]
    return time.perf_counter() - started, ""


def _race(
    strategy: str,
    base: Path,
    shared: Path,
    dest: Path,
    name: str,
    barrier: threading.Barrier,
    outcomes: list[tuple[float, str]],
) -> None:
    barrier.wait()
    outcomes.append(_prepare(strategy, base, shared, dest, name))


def _workspaces(work: Path, files: int, repeat: int, parallel: int, rounds: int) -> dict[str, Row]:
    shared = make_repo(work / "big", files)
    base = work / "big-base.git"
    git("clone", "--bare", "--quiet", str(shared), str(base))
    git("config", "gc.auto", "0", cwd=base)
    results: dict[str, Row] = {}
    counter = 0
    for strategy in STRATEGIES:
        alone = []
        for _ in range(repeat):
            counter += 1
            dest = work / f"ws{counter}"
            seconds, error = _prepare(strategy, base, shared, dest, f"b{counter}")
            assert not error, error
            alone.append(seconds)
            _remove(strategy, shared, dest)
        walls, errors = [], []
        for _ in range(rounds):
            dests = []
            outcomes: list[tuple[float, str]] = []
            barrier = threading.Barrier(parallel)

            threads = []
            for _ in range(parallel):
                counter += 1
                dest = work / f"ws{counter}"
                dests.append(dest)
                job = (strategy, base, shared, dest, f"b{counter}", barrier, outcomes)
                threads.append(threading.Thread(target=_race, args=job))
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            walls.append(time.perf_counter() - started)
            errors += [e for _, e in outcomes if e]
            for dest in dests:
                _remove(strategy, shared, dest)
        results[strategy] = Row(
            statistics.median(alone),
            statistics.median(walls),
            len(errors),
            parallel * rounds,
            errors[0] if errors else "",
        )
    return results


def _remove(strategy: str, shared: Path, dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    if strategy == "worktree add":
        git("worktree", "prune", cwd=shared)


# -- 3. start-up: the warm checkout pool -------------------------------------------------


@dataclass(frozen=True)
class Startup:
    p50: float  # ms, slot to the agent's start
    p95: float
    throughput: float  # jobs/s, first request to last job finished
    warm_s: float  # filling the pool before the jobs came
    claimed: int
    failed: int


STARTUP_CONFIGS = {
    # name: (pool size, checkouts at once); None = the default
    "no pool, checkouts unbounded": (0, 64),
    "no pool, checkouts <= cores": (0, None),
    "pool warm (default size)": (None, None),
    "pool warm (burst size)": (-1, None),
}


async def _startup(
    work: Path, repo: Path, name: str, jobs: int, capacity: int, job_ms: int
) -> Startup:
    pool, slots = STARTUP_CONFIGS[name]
    marks = work / f"marks-{len(list(work.iterdir()))}"
    marks.mkdir()
    # The agent notes when it started, then works for job_ms: sh starts in ~1 ms.
    agent = ["sh", "-c", f'date +%s.%N > {marks}/"$SHOAL_JOB_ID"; sleep {job_ms / 1000}']
    flags = {
        "repo": str(repo),
        "agents": {"agent": agent},
        "state_dir": marks.with_suffix(".state"),
        "max_concurrency": capacity,
        "max_queue_depth": jobs,
        "no_auth": True,
        "base_refresh_s": 3600,
        "pool_size": jobs if pool == -1 else pool,
        "checkout_concurrency": slots,
    }
    app = create_app(load_serve_settings(flags))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://b", timeout=600) as client,
    ):
        spaces = app.state.service.spaces
        warming = time.perf_counter()
        while spaces.pool.ready() < spaces.pool.size:
            await asyncio.sleep(0.05)
        warm_s = time.perf_counter() - warming
        started = time.perf_counter()
        answers = await asyncio.gather(
            *(client.post("/execute", json={"prompt": "go"}) for _ in range(jobs))
        )
        assert all(a.status_code == 202 for a in answers), answers[0].text
        while True:
            health = (await client.get("/health")).json()
            if health["active"] == 0 and health["queued"] == 0:
                break
            await asyncio.sleep(0.01)
        wall = time.perf_counter() - started
        records = (await client.get("/jobs", params={"limit": 500})).json()["jobs"]
        claimed = spaces.pool.claimed
    assert len(records) == jobs
    failed = [r for r in records if r["status"] != "completed"]
    delays = sorted(
        float((marks / r["job_id"]).read_text()) - r["started_at"]
        for r in records
        if (marks / r["job_id"]).exists()
    )
    return Startup(
        statistics.median(delays) * 1000,
        delays[int(len(delays) * 0.95) - 1] * 1000,
        jobs / wall,
        warm_s,
        claimed,
        len(failed),
    )


def _startups(work: Path, jobs: int, capacity: int, files: int, job_ms: int) -> dict[str, Startup]:
    repo = make_repo(work / "startup-repo", files)
    return {
        name: asyncio.run(_startup(work, repo, name, jobs, capacity, job_ms))
        for name in STARTUP_CONFIGS
    }


def _print_startups(rows: dict[str, Startup], args: argparse.Namespace) -> None:
    print(
        f"\n## Start-up: {args.startup_jobs} jobs of {args.job_ms} ms at capacity "
        f"{args.capacity} ({args.startup_files}-file repository)\n"
    )
    print(
        "| configuration | slot → agent p50 | ratio | p95 | ratio | throughput | ratio | "
        "pool filled in | taken from the pool | failed |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    ref = rows["no pool, checkouts <= cores"]
    for name, row in rows.items():
        print(
            f"| {name} | {row.p50:.0f} ms | {row.p50 / ref.p50:.3f}× | {row.p95:.0f} ms | "
            f"{row.p95 / ref.p95:.3f}× | {row.throughput:.1f} jobs/s | "
            f"{row.throughput / ref.throughput:.2f}× | {row.warm_s:.1f} s | "
            f"{row.claimed}/{args.startup_jobs} | {row.failed} |"
        )


def _print_overhead(over: dict[str, float], args: argparse.Namespace) -> None:
    print(
        f"## {args.jobs} no-op jobs at capacity {args.capacity} "
        f"({args.small_files}-file repository)\n"
    )
    print("| job time p50 | job time p95 | throughput | bare `true` floor | failed |")
    print("|---|---|---|---|---|")
    print(
        f"| {over['p50']:.0f} ms | {over['p95']:.0f} ms | {over['throughput']:.1f} jobs/s | "
        f"{over['floor_throughput']:.0f} procs/s | {over['failed']:.0f} |"
    )


def _print_workspaces(spaces: dict[str, Row], args: argparse.Namespace) -> None:
    print(f"\n## Workspace preparation, {args.files}-file repository\n")
    print(
        f"| strategy | alone (median of {args.repeat}) | ratio | {args.parallel} at once "
        f"(median wall of {args.rounds}) | ratio | failures |"
    )
    print("|---|---|---|---|---|---|")
    ref = spaces["clone --local"]
    for name, row in spaces.items():
        print(
            f"| {name} | {row.alone * 1000:.0f} ms | {row.alone / ref.alone:.2f}× | "
            f"{row.parallel_wall:.2f} s | {row.parallel_wall / ref.parallel_wall:.2f}× | "
            f"{row.failures}/{row.attempts} |"
        )
    for name, row in spaces.items():
        if row.example:
            print(f"\n{name} failure, e.g.: `{row.example}`")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--capacity", type=int, default=10)
    parser.add_argument("--small-files", type=int, default=100, help="repo size for part 1")
    parser.add_argument("--files", type=int, default=10_000, help="repo size for part 2")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--startup-jobs", type=int, default=200)
    parser.add_argument("--startup-files", type=int, default=2000, help="repo size for part 3")
    parser.add_argument("--job-ms", type=int, default=50, help="agent run time in part 3")
    parser.add_argument("--only", choices=["overhead", "workspaces", "startup"])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="shoal-bench-service-"))
    try:
        # Each part prints as soon as it is done: part 2 alone takes minutes.
        if args.only in (None, "overhead"):
            over = asyncio.run(_overhead(work, args.jobs, args.capacity, args.small_files))
            _print_overhead(over, args)
        if args.only in (None, "workspaces"):
            spaces = _workspaces(work, args.files, args.repeat, args.parallel, args.rounds)
            _print_workspaces(spaces, args)
        if args.only in (None, "startup"):
            rows = _startups(
                work, args.startup_jobs, args.capacity, args.startup_files, args.job_ms
            )
            _print_startups(rows, args)
        sys.stdout.flush()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
