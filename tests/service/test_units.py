"""Pure parts: FIFO admission and argv rendering, without git or HTTP."""

from __future__ import annotations

import asyncio

import pytest

from shoal.service.queue import QueueFull, Scheduler
from shoal.service.runner import render_argv

pytestmark = pytest.mark.anyio


async def test_admission_is_strictly_first_in_first_out() -> None:
    started: list[str] = []
    release = asyncio.Event()

    async def run(job_id: str) -> None:
        started.append(job_id)
        await release.wait()

    scheduler = Scheduler(run, capacity=2, max_depth=6)
    positions = [scheduler.admit(name) for name in "abcdef"]
    assert positions == [0, 0, 1, 2, 3, 4]
    with pytest.raises(QueueFull):
        scheduler.admit("g")
    assert scheduler.withdraw("d")
    assert not scheduler.withdraw("d")
    await asyncio.sleep(0)
    assert started == ["a", "b"]
    assert (scheduler.active, scheduler.queued) == (2, 3)
    release.set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert started == ["a", "b", "c", "e", "f"]
    assert (scheduler.active, scheduler.queued) == (0, 0)
    await scheduler.close()


def test_placeholders_are_filled_once_and_the_prompt_is_one_argument() -> None:
    template = ["agent", "--model={model}", "-p", "{prompt}", "--id", "{job_id}", "{other}"]
    argv, on_stdin = render_argv(template, prompt="a {model} $(b) 'c'", model="m1", job_id="j")
    assert argv == ["agent", "--model=m1", "-p", "a {model} $(b) 'c'", "--id", "j", "{other}"]
    assert not on_stdin
    argv, on_stdin = render_argv(["agent", "--model", "{model}"], prompt="p", model="{prompt}",
                                 job_id="j")  # fmt: skip
    assert argv == ["agent", "--model", "{prompt}"]
    assert on_stdin
