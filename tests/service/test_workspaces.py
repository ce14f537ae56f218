"""Checkouts: isolation, hardlinks, diff summaries, saved branches, prepare, HOME, many at once."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.service.conftest import TOKEN, ServeFactory, git

pytestmark = pytest.mark.anyio


async def test_each_job_gets_its_own_workspace_home_and_job_id(
    serve: ServeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOAL_SERVE_TOKEN", TOKEN)
    async with serve() as s:
        ids = []
        for name in ("a", "b"):
            ids.append(
                await s.submit(
                    f"pwd {s.path(name + '.pwd')}\nenv HOME {s.path(name + '.home')}\n"
                    f"env SHOAL_JOB_ID {s.path(name + '.id')}\n"
                    f"env SHOAL_SERVE_TOKEN {s.path(name + '.token')}"
                )
            )
        for job_id in ids:
            assert (await s.wait(job_id))["status"] == "completed"
        pwds = {s.path(n + ".pwd").read_text() for n in "ab"}
        homes = {s.path(n + ".home").read_text() for n in "ab"}
        assert len(pwds) == 2
        assert len(homes) == 2
        assert not pwds & homes
        assert [s.path(n + ".id").read_text() for n in "ab"] == ids
        # The service's own secret never reaches an agent.
        assert {s.path(n + ".token").read_text() for n in "ab"} == {"<unset>"}


async def test_two_jobs_edit_the_same_file_in_isolation_with_hardlinked_objects(
    serve: ServeFactory, origin: Path, tmp_path: Path
) -> None:
    base = tmp_path / "state" / "base.git"
    async with serve() as s:
        a = await s.submit(
            f"write app.py from a\ntouch {s.path('a')}\nwait {s.path('go')}", save_branch=True
        )
        b = await s.submit(f"write app.py from b\ntouch {s.path('b')}\nwait {s.path('go')}")
        await s.wait_file("a")
        await s.wait_file("b")
        work_a = Path((await s.job(a))["workspace"])
        assert (work_a / "app.py").read_text() == "from a\n"
        assert (Path((await s.job(b))["workspace"]) / "app.py").read_text() == "from b\n"
        # Object files of the checkout are the base's own files, not copies.
        objects = [
            p for p in (base / "objects").rglob("*") if p.is_file() and len(p.parent.name) == 2
        ]
        assert objects
        for path in objects:
            twin = work_a / ".git" / "objects" / path.relative_to(base / "objects")
            assert os.stat(twin).st_ino == os.stat(path).st_ino
        s.path("go").touch()
        job_a, job_b = await s.wait(a), await s.wait(b)
    for job in (job_a, job_b):
        assert job["status"] == "completed"
        assert job["diff"]["files_changed"] == 1
        assert job["diff"]["files"] == [{"path": "app.py", "insertions": 1, "deletions": 2}]
        assert job["workspace"] is None
    assert git("config", "gc.auto", cwd=base).strip() == "0"  # nothing repacks shared objects
    assert (origin / "app.py").read_text() == "x = 1\ny = 2\n"
    assert git("show", "main:app.py", cwd=base) == "x = 1\ny = 2\n"
    assert job_a["branch"] == f"shoal/job-{a}"
    assert git("show", f"shoal/job-{a}:app.py", cwd=base) == "from a\n"
    assert job_b["branch"] is None
    assert f"shoal/job-{b}" not in git("branch", "--list", cwd=base)
    assert list((tmp_path / "state" / "jobs").iterdir()) == []


async def test_twenty_jobs_prepare_their_workspaces_at_once_without_lock_failures(
    serve: ServeFactory,
) -> None:
    async with serve(max_concurrency=20, max_queue_depth=20) as s:
        ids = await asyncio.gather(
            *(s.submit(f"{n}\n", agent="tee", save_branch=True) for n in range(20))
        )
        jobs = [await s.wait(job_id, timeout=60) for job_id in ids]
    failures = [(j["status"], j["error"]) for j in jobs if j["status"] != "completed"]
    assert failures == []
    assert sorted(j["output"] for j in jobs) == sorted(f"{n}\n" for n in range(20))
    assert {j["branch"] for j in jobs} == {f"shoal/job-{job_id}" for job_id in ids}


async def test_ref_selects_what_is_checked_out(serve: ServeFactory) -> None:
    async with serve() as s:
        on_feature = await s.wait(await s.submit("write feature.txt changed", ref="feature"))
        on_main = await s.wait(await s.submit("write feature.txt changed"))
        missing = await s.wait(await s.submit("print x", ref="no-such-branch"))
    assert on_feature["diff"]["files"] == [{"path": "feature.txt", "insertions": 1, "deletions": 1}]
    assert on_main["diff"]["files"] == [{"path": "feature.txt", "insertions": 1, "deletions": 0}]
    assert missing["status"] == "failed"
    assert "'no-such-branch' was not found" in missing["error"]


async def test_new_commits_in_the_repository_reach_later_jobs(
    serve: ServeFactory, origin: Path
) -> None:
    async with serve(base_refresh_s=0) as s:
        (origin / "new.txt").write_text("new\n")
        git("add", "new.txt", cwd=origin)
        git("commit", "--quiet", "-m", "new", cwd=origin)
        job = await s.wait(await s.submit("write new.txt newer"))
    assert job["diff"]["files"] == [{"path": "new.txt", "insertions": 1, "deletions": 1}]


async def test_prepare_command_runs_in_the_checkout_and_its_failure_fails_the_job(
    serve: ServeFactory, tmp_path: Path
) -> None:
    script = "import pathlib, sys; pathlib.Path('prepared').touch(); sys.exit(int(sys.argv[1]))"
    async with serve(prepare=[sys.executable, "-c", script, "0"]) as s:
        job = await s.wait(await s.submit("print ok"))
    assert job["status"] == "completed"
    assert [f["path"] for f in job["diff"]["files"]] == ["prepared"]
    async with serve(prepare=[sys.executable, "-c", script, "4"]) as s:
        job = await s.wait(await s.submit(f"touch {s.path('ran')}"))
        assert job["status"] == "failed"
        assert "prepare command exited 4" in job["error"]
        assert not s.path("ran").exists()
    assert list((tmp_path / "state" / "jobs").iterdir()) == []


async def test_home_template_is_copied_into_each_home(serve: ServeFactory, tmp_path: Path) -> None:
    template = tmp_path / "home-template"
    (template / ".agent").mkdir(parents=True)
    (template / ".agent" / "config").write_text("shared\n")
    async with serve(home_template=template) as s:
        job = await s.wait(
            await s.submit(f"copy ~/.agent/config {s.path('seen')}\nwrite ~/.agent/config mine")
        )
        assert job["status"] == "completed"
        assert s.path("seen").read_text() == "shared\n"
    assert (template / ".agent" / "config").read_text() == "shared\n"
