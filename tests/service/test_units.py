"""Pure parts: FIFO admission and argv rendering, without git or HTTP."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from shoal.service.asyncstore import AsyncStore
from shoal.service.models import JobStatus
from shoal.service.queue import QueueFull, Scheduler
from shoal.service.runner import MAX_ARG_BYTES, argv_problem, render_argv
from shoal.service.store import Job, SqliteStore

pytestmark = pytest.mark.anyio


def queued_job(job_id: str) -> Job:
    return Job(
        id=job_id,
        kind="execute",
        status=JobStatus.queued,
        prompt="p",
        agent="a",
        model=None,
        ref=None,
        timeout_s=1,
        metadata=None,
        save_branch=False,
        queued_at=time.time(),
    )


async def test_admission_is_strictly_first_in_first_out(tmp_path: Path) -> None:
    started: list[str] = []
    release = asyncio.Event()

    async def run(job: Job) -> None:
        started.append(job.id)
        await release.wait()
        store.update(job.id, status=JobStatus.completed, finished_at=time.time())

    store = SqliteStore(tmp_path / "jobs.sqlite3")
    scheduler = Scheduler(AsyncStore(store), run, capacity=2)

    async def admit(job_id: str) -> int:
        store.enqueue(queued_job(job_id), max_depth=6)
        await scheduler.pump()
        return store.position(job_id) or 0

    positions = [await admit(name) for name in "abcdef"]
    assert positions == [0, 0, 1, 2, 3, 4]
    with pytest.raises(QueueFull):
        await admit("g")
    assert store.withdraw("d", time.time())
    assert not store.withdraw("d", time.time())
    await asyncio.sleep(0)
    assert started == ["a", "b"]
    assert (scheduler.active, store.queued()) == (2, 3)
    release.set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert started == ["a", "b", "c", "e", "f"]
    assert (scheduler.active, store.queued()) == (0, 0)
    await scheduler.close()
    store.close()


def test_placeholders_are_filled_once_and_the_prompt_is_one_argument() -> None:
    template = ["agent", "--model={model}", "-p", "{prompt}", "--id", "{job_id}", "{other}"]
    argv, on_stdin = render_argv(template, prompt="a {model} $(b) 'c'", model="m1", job_id="j")
    assert argv == ["agent", "--model=m1", "-p", "a {model} $(b) 'c'", "--id", "j", "{other}"]
    assert not on_stdin
    argv, on_stdin = render_argv(
        ["agent", "--model", "{model}"], prompt="p", model="{prompt}", job_id="j"
    )
    assert argv == ["agent", "--model", "{prompt}"]
    assert on_stdin


def test_prompt_file_and_stdin_json_are_placeholders_not_arguments() -> None:
    argv, on_stdin = render_argv(
        ["agent", "--message-file", "{prompt_file}"],
        prompt="p",
        model="m",
        job_id="j",
        prompt_file="/jobs/j/prompt.txt",
    )
    assert (argv, on_stdin) == (["agent", "--message-file", "/jobs/j/prompt.txt"], False)
    argv, on_stdin = render_argv(["agent", "{stdin_json}", "-q"], prompt="p", model="m", job_id="j")
    assert (argv, on_stdin) == (["agent", "-q"], True)
    assert argv_problem(["agent", "x" * MAX_ARG_BYTES]) is None
    problem = argv_problem(["agent", "é" * (MAX_ARG_BYTES // 2 + 1)])
    assert problem is not None
    assert f"{MAX_ARG_BYTES // 2 * 2 + 2} bytes" in problem


def test_the_local_store_never_starts_a_job_before_it_was_queued(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "jobs.sqlite3")
    queued = queued_job("late")
    store.enqueue(queued, max_depth=5)
    claimed = store.claim(queued.queued_at - 1.0)  # asked for before the job came
    assert claimed is not None
    assert claimed.started_at == queued.queued_at
    later = queued_job("later")
    store.enqueue(later, max_depth=5)
    claimed = store.claim(later.queued_at + 1.0)
    assert claimed is not None
    assert claimed.started_at == later.queued_at + 1.0
