"""Strict FIFO admission: ``capacity`` slots, one waiting line, a depth limit.

A job leaves the line only when a slot is free and it is at the front, so no later job
can overtake an earlier one. Pure asyncio: what a job does is the caller's business.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

Run = Callable[[str], Awaitable[None]]


class QueueFull(Exception):
    """Running + queued jobs already reach the depth limit."""


class Scheduler:
    def __init__(self, run: Run, *, capacity: int, max_depth: int) -> None:
        self._run = run
        self.capacity = capacity
        self.max_depth = max_depth
        self._waiting: deque[str] = deque()
        self._active: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    @property
    def active(self) -> int:
        return len(self._active)

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def admit(self, job_id: str, *, check_depth: bool = True) -> int:
        """Put the job in line and start what can start; returns its position (0 = running).

        ``check_depth=False`` is for jobs recovered after a restart: they were admitted once.
        """
        if check_depth and self.active + self.queued >= self.max_depth:
            raise QueueFull(job_id)
        self._waiting.append(job_id)
        self._pump()
        return self.position(job_id) or 0

    def position(self, job_id: str) -> int | None:
        if job_id in self._active:
            return 0
        try:
            return self._waiting.index(job_id) + 1
        except ValueError:
            return None

    def withdraw(self, job_id: str) -> bool:
        """Take a waiting job out of line; False when it is not waiting."""
        try:
            self._waiting.remove(job_id)
        except ValueError:
            return False
        return True

    def is_active(self, job_id: str) -> bool:
        return job_id in self._active

    def _pump(self) -> None:
        while not self._closed and self._waiting and len(self._active) < self.capacity:
            job_id = self._waiting.popleft()
            self._active[job_id] = asyncio.create_task(self._slot(job_id), name=f"job-{job_id}")

    async def _slot(self, job_id: str) -> None:
        try:
            await self._run(job_id)
        finally:
            self._active.pop(job_id, None)
            self._pump()

    async def close(self) -> None:
        """Start nothing more; cancel running jobs and wait for them to wind down."""
        self._closed = True
        tasks = list(self._active.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
