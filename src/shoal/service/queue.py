"""Strict FIFO admission: a :class:`JobQueue` holds the line, a :class:`Scheduler` runs it.

The queue's own order is the only order: a job leaves the line only when a slot is free
and it is the first one waiting, so no later job can overtake an earlier one. On one host
the queue is the SQLite job store; a queue shared by many hosts implements the same
protocol, and each host's scheduler keeps its own capacity.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar


class Identified(Protocol):
    @property
    def id(self) -> str: ...


# What the line holds: the job store's records on one host (kept apart from the store,
# so that the store depends on this protocol and not the other way round).
Job = TypeVar("Job", bound=Identified)


class QueueFull(Exception):
    """Running + queued jobs already reach the depth limit."""


class JobQueue(Protocol[Job]):
    def enqueue(self, job: Job, *, max_depth: int) -> int:
        """Put ``job`` at the end of the line; its position (1 = next to start).

        Raises QueueFull when running + queued jobs already reach ``max_depth``: the one
        place the depth limit is checked.
        """

    def claim(self, now: float) -> Job | None:
        """The first job in line, now marked running; None when nobody waits."""

    def position(self, job_id: str) -> int | None:
        """1 = next to start; None when the job is not waiting."""

    def withdraw(self, job_id: str, now: float) -> bool:
        """Take a waiting job out of line (cancelled); False when it was not waiting."""

    def queued(self) -> int:
        """How many jobs wait."""

    def request_cancel(self, job_id: str) -> None:
        """Ask whichever host runs ``job_id`` to stop it."""


class Scheduler(Generic[Job]):
    """``capacity`` slots on this host, filled from the queue in its order."""

    def __init__(
        self, queue: JobQueue[Job], run: Callable[[Job], Awaitable[None]], *, capacity: int
    ) -> None:
        self.queue = queue
        self._run = run
        self.capacity = capacity
        self._active: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    @property
    def active(self) -> int:
        return len(self._active)

    def running(self) -> list[str]:
        """Ids of the jobs holding a slot here."""
        return list(self._active)

    def pump(self) -> None:
        """Start jobs from the front of the line while slots are free."""
        while not self._closed and len(self._active) < self.capacity:
            job = self.queue.claim(time.time())
            if job is None:
                return
            self._active[job.id] = asyncio.create_task(self._slot(job), name=f"job-{job.id}")

    async def _slot(self, job: Job) -> None:
        try:
            await self._run(job)
        finally:
            self._active.pop(job.id, None)
            self.pump()

    def stop_starting(self) -> None:
        """Start nothing more; running jobs go on."""
        self._closed = True

    async def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for running jobs to end; True when none is left."""
        tasks = list(self._active.values())
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        return not self._active

    async def close(self) -> None:
        """Start nothing more; cancel running jobs and wait for them to wind down."""
        self._closed = True
        tasks = list(self._active.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
