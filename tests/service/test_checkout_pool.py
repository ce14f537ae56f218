"""The warm checkout pool: taken by rename, the same guarantees as a fresh checkout,
invalidated by new commits, safe across a restart, bounded in disk; checkouts bounded."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import sys
import threading
import time
from pathlib import Path
from typing import cast

import pytest

from shoal.errors import ConfigError
from shoal.service.settings import load_serve_settings
from shoal.service.workspaces import Workspaces
from tests.service.conftest import Serve, ServeFactory, git, make_repo

pytestmark = pytest.mark.anyio


def spaces_of(s: Serve) -> Workspaces:
    return s.service.spaces


async def pool_ready(s: Serve, count: int, timeout: float = 30) -> list[Path]:
    """The pool's ready entries once there are ``count`` of them."""
    pool = spaces_of(s).pool
    deadline = time.monotonic() + timeout
    while pool.ready() < count:
        assert time.monotonic() < deadline, f"pool still at {pool.status()}"
        await asyncio.sleep(0.02)
    return [p for p in pool.root.iterdir() if not p.name.startswith(".")]


async def test_a_job_takes_a_ready_checkout_with_every_guarantee_of_a_fresh_one(
    serve: ServeFactory, tmp_path: Path
) -> None:
    base = tmp_path / "state" / "base.git"
    script = "import pathlib; pathlib.Path('prepared').touch()"
    async with serve(pool_size=2, prepare=[sys.executable, "-c", script]) as s:
        entries = await pool_ready(s, 2)
        inodes = {os.stat(e).st_ino for e in entries}
        ids = []
        for name in ("a", "b"):
            ids.append(
                await s.submit(
                    f"write app.py from {name}\nenv HOME {s.path(name + '.home')}\n"
                    f"env SHOAL_JOB_ID {s.path(name + '.id')}\n"
                    f"touch {s.path(name)}\nwait {s.path('go')}"
                )
            )
        for name in ("a", "b"):
            await s.wait_file(name)
        works = [Path((await s.job(job_id))["workspace"]) for job_id in ids]
        # Taken by rename: the very directories the pool built, one each.
        assert {os.stat(w.parent).st_ino for w in works} == inodes
        for job_id, work in zip(ids, works, strict=True):
            assert (work / ".git" / "HEAD").read_text() == f"ref: refs/heads/shoal/job-{job_id}\n"
            objects = [p for p in (base / "objects").rglob("*") if p.is_file()]
            assert objects
            for path in objects:  # its own clone, objects hardlinked to the base
                twin = work / ".git" / "objects" / path.relative_to(base / "objects")
                assert os.stat(twin).st_ino == os.stat(path).st_ino
        s.path("go").touch()
        jobs = [await s.wait(job_id) for job_id in ids]
        assert spaces_of(s).pool.claimed == 2
    homes = [s.path(n + ".home").read_text() for n in "ab"]
    assert [s.path(n + ".id").read_text() for n in "ab"] == ids
    assert homes == [str(w.parent / "home") for w in works]
    for job in jobs:
        assert job["status"] == "completed"
        # Its own edit and what the prepare command left, nothing of the other job's.
        assert job["diff"]["files"] == [
            {"path": "app.py", "insertions": 1, "deletions": 2},
            {"path": "prepared", "insertions": 0, "deletions": 0},
        ]
    assert list((tmp_path / "state" / "jobs").iterdir()) == []


async def test_another_ref_or_an_empty_pool_gets_a_fresh_checkout(serve: ServeFactory) -> None:
    async with serve(pool_size=1) as s:
        await pool_ready(s, 1)
        on_feature = await s.wait(await s.submit("write feature.txt changed", ref="feature"))
        pool = spaces_of(s).pool
        assert (pool.claimed, pool.missed, pool.ready()) == (0, 0, 1)
        pool.close()  # no refill from here on: the second job finds the pool empty
        taken = await s.wait(await s.submit("write app.py taken"))
        fresh = await s.wait(await s.submit("write app.py fresh"))
        assert (pool.claimed, pool.missed, pool.ready()) == (1, 1, 0)
    assert on_feature["diff"]["files"] == [{"path": "feature.txt", "insertions": 1, "deletions": 1}]
    for job in (taken, fresh):
        assert job["status"] == "completed"
        assert job["diff"]["files"] == [{"path": "app.py", "insertions": 1, "deletions": 2}]


async def test_pool_off_and_every_job_makes_its_own(serve: ServeFactory) -> None:
    async with serve(pool_size=0) as s:
        job = await s.wait(await s.submit("write app.py z"))
        pool = spaces_of(s).pool
        assert job["status"] == "completed"
        assert (pool.claimed, pool.ready()) == (0, 0)
        assert not any(pool.root.iterdir())


async def test_new_commits_invalidate_the_entries_of_the_old_one(
    serve: ServeFactory, origin: Path
) -> None:
    async with serve(pool_size=2, base_refresh_s=0) as s:
        old = git("rev-parse", "HEAD", cwd=origin).strip()
        assert all(e.name.startswith(old) for e in await pool_ready(s, 2))
        (origin / "new.txt").write_text("new\n")
        git("add", "new.txt", cwd=origin)
        git("commit", "--quiet", "-m", "new", cwd=origin)
        new = git("rev-parse", "HEAD", cwd=origin).strip()
        job = await s.wait(await s.submit("write new.txt newer"))
        assert job["diff"]["files"] == [{"path": "new.txt", "insertions": 1, "deletions": 1}]
        entries = await pool_ready(s, 2)
        assert entries
        assert all(e.name.startswith(new) for e in entries), entries


async def test_concurrent_claims_never_share_an_entry(serve: ServeFactory, tmp_path: Path) -> None:
    async with serve(pool_size=3, max_concurrency=3) as s:
        await pool_ready(s, 3)
        spaces = spaces_of(s)
        commit = git("rev-parse", "main", cwd=spaces.base).strip()
        dests = [tmp_path / f"claim{n}" for n in range(8)]
        barrier = threading.Barrier(len(dests))
        won: list[Path] = []

        def claim(dest: Path) -> None:
            barrier.wait()
            if spaces.pool.claim(commit, dest):
                won.append(dest)

        spaces.pool.close()  # no refill while the threads race: exactly three to take
        threads = [threading.Thread(target=claim, args=(d,)) for d in dests]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(won) == 3
    assert len({os.stat(d).st_ino for d in won}) == 3
    assert all((d / "work" / "app.py").exists() for d in won)


async def test_after_a_restart_only_complete_entries_of_these_settings_are_taken(
    serve: ServeFactory, tmp_path: Path
) -> None:
    pool_dir = tmp_path / "state" / "pool"
    async with serve(pool_size=2) as s:
        kept, taken = await pool_ready(s, 2)
    inode = os.stat(kept).st_ino
    # An entry claimed by a job the crash took with it: an orphan like any job's checkout.
    orphan = tmp_path / "state" / "jobs" / "0000orphan"
    orphan.parent.mkdir(exist_ok=True)
    taken.rename(orphan)
    # What a crash mid-build leaves, and an entry made with other settings (or before a reboot).
    half = pool_dir / ".build-0123456789ab"
    (half / "work").mkdir(parents=True)
    commit = kept.name.split("-")[0]
    foreign = pool_dir / f"{commit}-000000000000-abcdef"
    foreign.mkdir()
    async with serve(pool_size=1) as s:
        pool = spaces_of(s).pool
        assert not half.exists()
        assert not foreign.exists()
        assert not orphan.exists()
        await s.submit(f"touch {s.path('in')}\nwait {s.path('go')}")
        await s.wait_file("in")
        (running,) = (await s.client.get("/jobs")).json()["jobs"]
        assert os.stat(Path(running["workspace"]).parent).st_ino == inode
        assert pool.claimed == 1
        s.path("go").touch()
        assert (await s.wait(running["job_id"]))["status"] == "completed"


async def test_the_pool_stays_within_its_disk_budget(serve: ServeFactory) -> None:
    async with serve(pool_size=40, pool_max_disk_mb=1) as s:
        pool = spaces_of(s).pool
        deadline = time.monotonic() + 60
        while True:
            status = pool.status()
            entry = cast(int, status["entry_bytes"])
            if entry and pool.ready() >= (1 << 20) // entry:
                break
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # a builder that ignored the budget would have gone on
        assert 1 <= pool.ready() == (1 << 20) // entry < 40


async def test_sparse_checkout_holds_only_the_configured_directories(
    serve: ServeFactory, tmp_path: Path
) -> None:
    files = {"top.txt": "t\n", "src/a.py": "a\n", "src/deep/b.py": "b\n", "docs/x.md": "x\n"}
    repo = make_repo(tmp_path / "sparse-origin", files)
    async with serve(repo=str(repo), sparse_paths="src", pool_size=1) as s:
        await pool_ready(s, 1)
        fresh = await s.submit(f"pwd {s.path('fresh')}\nwrite src/a.py changed", ref="main")
        pooled = await s.submit(f"pwd {s.path('pooled')}\nwrite src/a.py changed")
        jobs = [await s.wait(fresh), await s.wait(pooled)]
        assert spaces_of(s).pool.claimed == 1
    for job in jobs:
        assert job["status"] == "completed"
        assert job["diff"]["files"] == [{"path": "src/a.py", "insertions": 1, "deletions": 1}]


async def test_sparse_checkout_tree(tmp_path: Path) -> None:
    files = {"top.txt": "t\n", "src/a.py": "a\n", "src/deep/b.py": "b\n", "docs/x.md": "x\n"}
    repo = make_repo(tmp_path / "origin", files)
    spaces = Workspaces(tmp_path / "state", str(repo), sparse_paths=("src",))
    spaces.ensure_base()
    space = spaces.prepare("j1", None)
    present = sorted(
        str(p.relative_to(space.work)) for p in space.work.rglob("*") if ".git" not in p.parts
    )
    assert present == ["src", "src/a.py", "src/deep", "src/deep/b.py", "top.txt"]
    diff, _ = spaces.finish(space, save_branch=False)
    assert diff["files_changed"] == 0


async def test_checkouts_run_at_most_checkout_concurrency_at_once(
    serve: ServeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = git("--exec-path", cwd=tmp_path).strip() + "/git"
    shims, inside = tmp_path / "shims", tmp_path / "inside"
    shims.mkdir()
    inside.mkdir()
    log = tmp_path / "overlap.log"
    shim = shims / "git"
    # Each checkout stays 0.3 s and writes down how many were inside at that moment.
    shim.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = checkout ]; then\n'
        f"  touch {inside}/$$; ls {inside} | wc -l >> {log}; sleep 0.3; rm {inside}/$$\n"
        "fi\n"
        f'exec {real} "$@"\n'
    )
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ['PATH']}")
    async with serve(pool_size=0, checkout_concurrency=2, max_concurrency=6) as s:
        ids = await asyncio.gather(*(s.submit("print x", agent="tee") for _ in range(6)))
        jobs = [await s.wait(job_id, timeout=60) for job_id in ids]
    assert [j["status"] for j in jobs] == ["completed"] * 6
    counts = [int(line) for line in log.read_text().split()]
    assert len(counts) == 6
    assert max(counts) == 2


async def test_a_failing_prepare_command_is_not_retried_in_a_loop(
    serve: ServeFactory, tmp_path: Path
) -> None:
    runs = tmp_path / "prepare-runs"
    script = f"open({str(runs)!r}, 'a').write('x'); raise SystemExit(3)"
    async with serve(pool_size=2, prepare=[sys.executable, "-c", script]) as s:
        deadline = time.monotonic() + 20
        while not runs.exists():  # the pool's first build
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        job = await s.wait(await s.submit("print x"))
        await asyncio.sleep(0.5)
        assert spaces_of(s).pool.ready() == 0
    assert job["status"] == "failed"
    assert "prepare command exited 3" in job["error"]
    # One try by the pool, one by the job: the job's checkout woke the pool, which waited.
    assert runs.read_text() == "xx"


async def test_prepared_entries_and_an_old_home_template_are_not_taken_after_a_restart(
    serve: ServeFactory, tmp_path: Path
) -> None:
    template = tmp_path / "home-template"
    template.mkdir()
    (template / "config").write_text("one\n")
    prepare = [sys.executable, "-c", "pass"]
    async with serve(pool_size=1, home_template=template, prepare=prepare) as s:
        (before,) = await pool_ready(s, 1)
    async with serve(pool_size=1, home_template=template, prepare=prepare) as s:
        (after,) = await pool_ready(s, 1)
        assert not before.exists()  # what the old process's prepare did is not trusted
    async with serve(pool_size=1, home_template=template) as s:
        (kept,) = await pool_ready(s, 1)
    (template / "config").write_text("two, longer\n")
    async with serve(pool_size=1, home_template=template) as s:
        (fresh,) = await pool_ready(s, 1)
        assert not kept.exists()
        assert (fresh / "home" / "config").read_text() == "two, longer\n"
    assert after != before


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("src, docs/", ("src", "docs")),
        ('["src", "lib/core"]', ("src", "lib/core")),
        ("", None),
    ],
)
def test_sparse_paths_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, given: str, expected: object
) -> None:
    monkeypatch.setenv("SHOAL_SERVE_SPARSE_PATHS", given)
    flags = {"repo": str(tmp_path), "agents": {"a": "true"}, "no_auth": True}
    assert load_serve_settings(flags).sparse_paths == expected


@pytest.mark.parametrize("given", ["../up", "/abs", "-flag", "[broken", "a/../../b"])
def test_sparse_paths_outside_the_repository_are_refused(tmp_path: Path, given: str) -> None:
    with pytest.raises(ConfigError, match="sparse_paths"):
        load_serve_settings(
            {"repo": str(tmp_path), "agents": {"a": "true"}, "no_auth": True, "sparse_paths": given}
        )


def test_kill_9_with_a_claimed_entry_and_one_being_built(tmp_path: Path, origin: Path) -> None:
    from tests.service.test_server import Server, wait_until

    sync = tmp_path / "sync"
    sync.mkdir()
    pool_dir = tmp_path / "state" / "pool"
    server = Server(tmp_path, origin)  # capacity 1: a pool of one by default

    def ready() -> list[Path]:
        return [p for p in pool_dir.iterdir() if not p.name.startswith(".")]

    try:
        server.start()
        wait_until(ready, "the first pool entry")
        (entry,) = ready()
        inode = os.stat(entry).st_ino
        running = server.submit(f"write app.py mine\ntouch {sync / 'a'}\nwait {sync / 'never'}")
        wait_until((sync / "a").exists, "the job to start")
        workspace = Path(server.job(running)["workspace"])
        assert os.stat(workspace.parent).st_ino == inode
        # Killed while the pool refills behind the job (or just after).
        server.kill(signal.SIGKILL)
        server.start()
        assert server.job(running)["status"] == "interrupted"
        assert not workspace.exists()
        assert not [p for p in pool_dir.iterdir() if p.name.startswith(".build-")]
        wait_until(ready, "a pool entry after the restart")
        (waiting,) = ready()
        later = server.submit(f"write app.py later\npwd {sync / 'pwd'}")
        job = server.wait(later)
        assert job["status"] == "completed"
        assert Path((sync / "pwd").read_text()).parent.name == later
        assert not waiting.exists()  # the job took it: nothing else removes a current entry
        assert job["diff"]["files"] == [{"path": "app.py", "insertions": 1, "deletions": 2}]
        assert list((tmp_path / "state" / "jobs").iterdir()) == []
    finally:
        (sync / "never").touch()  # no agent left waiting through the shutdown grace
        server.kill(signal.SIGTERM)
        server.client.close()
