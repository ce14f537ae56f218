"""Strict FIFO admission: a :class:`JobQueue` holds the line, a :class:`Scheduler` runs it.

The queue's own order is the only order: a job leaves the line only when a slot is free
and it is the first one waiting, so no later job can overtake an earlier one. On one host
the queue is the SQLite job store; a queue shared by many hosts implements the same
protocol, and each host's scheduler keeps its own capacity. The scheduler awaits its
claims (:class:`Line`): a claim on a shared queue may wait on another host.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from shoal.errors import first_line

log = logging.getLogger("shoal.serve")


class Identified(Protocol):
    @property
    def id(self) -> str: ...


# What the line holds: the job store's records on one host (kept apart from the store,
# so that the store depends on this protocol and not the other way round).
Job = TypeVar("Job", bound=Identified)
Claimed = TypeVar("Claimed", bound=Identified, covariant=True)


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


class Line(Protocol[Claimed]):
    """What the scheduler asks of the queue, awaited."""

    async def claim(self, now: float) -> Claimed | None:
        """:meth:`JobQueue.claim`."""


class Scheduler(Generic[Job]):
    """``capacity`` slots on this host, filled from the queue in its order.

    One filling at a time (:meth:`pump_soon`): claims are never in flight together, so a
    node never claims beyond its free slots, and a claim that waits holds up nothing else.
    """

    def __init__(
        self, queue: Line[Job], run: Callable[[Job], Awaitable[None]], *, capacity: int
    ) -> None:
        self.queue = queue
        self._run = run
        self.capacity = capacity
        self._active: dict[str, asyncio.Task[None]] = {}
        self._closed = False
        self._filling: asyncio.Task[None] | None = None
        self._again = False

    @property
    def active(self) -> int:
        return len(self._active)

    def running(self) -> list[str]:
        """Ids of the jobs holding a slot here."""
        return list(self._active)

    def pump_soon(self) -> None:
        """Start jobs from the front of the line while slots are free, in the background;
        a filling already under way looks at the line once more when it is done."""
        self._again = True
        if not self._closed and (self._filling is None or self._filling.done()):
            self._filling = asyncio.get_running_loop().create_task(self._fill(), name="shoal-fill")

    async def pump(self) -> None:
        """:meth:`pump_soon`, and wait until the slots are filled from the line."""
        self.pump_soon()
        if self._filling is not None:
            # Shielded: a caller that goes away must not cancel a claim in flight, whose job
            # would then be running in the queue and in no slot.
            await asyncio.shield(self._filling)

    async def _fill(self) -> None:
        while self._again and not self._closed:
            self._again = False
            while not self._closed and len(self._active) < self.capacity:
                try:
                    job = await self.queue.claim(time.time())
                except Exception as exc:  # the queue did not answer: the next pump tries again
                    log.warning("could not take the next job from the line: %s", first_line(exc))
                    return
                if job is None:
                    break
                # Claimed is started, even when closing: close() cancels it like the rest.
                self._active[job.id] = asyncio.create_task(self._slot(job), name=f"job-{job.id}")

    async def _slot(self, job: Job) -> None:
        try:
            await self._run(job)
        finally:
            self._active.pop(job.id, None)
            self.pump_soon()

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
        if self._filling is not None:
            await asyncio.gather(self._filling, return_exceptions=True)
        tasks = list(self._active.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
