"""The one boundary where the service calls its job store: every call is awaited, and
with a PostgreSQL queue none runs on the event loop's thread.

A PostgreSQL call can wait: on the line's advisory lock held by another node (up to the
lock timeout), on a slow server, on a network hiccup (up to the statement timeout). Run
on the loop, that wait froze every request and stream of the node. Here each call runs
in a small pool of worker threads, each thread with a psycopg connection of its own
(:class:`~shoal.service.pgstore.PgStore` keeps one per thread), so one call that waits
holds one thread and the others go on.

Threads rather than psycopg's ``AsyncConnection`` and ``psycopg_pool``: the store's SQL,
its transactions and its tests stay the synchronous code they are, the retry on a dropped
connection lives in the store beside that SQL, and no dependency is added
(``psycopg_pool`` is a separate package); a handful of threads is what a node needs,
as its calls are short and few. The SQLite store is called inline, on the loop's thread
as before: a local file, short transactions, no network and no lock another host holds,
and its connection is bound to the thread that opened it.

Calls in threads can overtake each other; the updates of one job are kept in the order
they were made (a checkpoint of a job's output must not land after its final record). An
awaited call that is cancelled does not stop its thread: the call still completes, only
its answer is dropped. Callers whose answer must not be lost (a claim) shield it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from shoal.service.models import JobStatus
from shoal.service.store import Job, JobStore

P = ParamSpec("P")
T = TypeVar("T")
# Threads (each with its connection) for the calls of one node.
STORE_THREADS = 4
# Of them, at most this many wait on the line's lock (enqueue, claim) at once: reads, the
# heartbeat and the records' updates always have a thread, however long the lock is held.
LINE_THREADS = 2


class AsyncStore:
    """``store``'s calls, awaited; in ``threads`` worker threads, or inline with 0."""

    def __init__(self, store: JobStore, *, threads: int = 0) -> None:
        self.sync = store
        self.node = store.node
        self.shared = store.shared
        self._threads = (
            ThreadPoolExecutor(threads, thread_name_prefix="shoal-store") if threads else None
        )
        self._line = asyncio.Semaphore(max(1, min(LINE_THREADS, threads - 1)))
        self._writing: dict[str, asyncio.Lock] = {}  # job id -> its updates, one at a time
        self._writers: dict[str, int] = {}  # job id -> updates holding or awaiting its lock

    async def run(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``call(*args, **kwargs)``, a call of the store, off the loop when it has threads."""
        if self._threads is None:
            return call(*args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, functools.partial(call, *args, **kwargs))

    @contextlib.asynccontextmanager
    async def _in_line(self) -> AsyncIterator[None]:
        if self._threads is None:
            yield
            return
        async with self._line:
            yield

    async def close(self) -> None:
        await self.run(self.sync.close)
        if self._threads is not None:
            self._threads.shutdown(wait=False)

    # -- the line ----------------------------------------------------------------------------

    async def enqueue(self, job: Job, *, max_depth: int) -> int:
        async with self._in_line():
            return await self.run(self.sync.enqueue, job, max_depth=max_depth)

    async def claim(self, now: float) -> Job | None:
        async with self._in_line():
            return await self.run(self.sync.claim, now)

    async def position(self, job_id: str) -> int | None:
        return await self.run(self.sync.position, job_id)

    async def withdraw(self, job_id: str, now: float) -> bool:
        return await self.run(self.sync.withdraw, job_id, now)

    async def queued(self) -> int:
        return await self.run(self.sync.queued)

    async def request_cancel(self, job_id: str) -> None:
        await self.run(self.sync.request_cancel, job_id)

    # -- records -----------------------------------------------------------------------------

    async def update(self, job_id: str, **changes: Any) -> None:
        if self._threads is None:
            self.sync.update(job_id, **changes)
            return
        lock = self._writing.setdefault(job_id, asyncio.Lock())
        self._writers[job_id] = self._writers.get(job_id, 0) + 1
        try:
            async with lock:
                await self.run(self.sync.update, job_id, **changes)
        finally:
            self._writers[job_id] -= 1
            if not self._writers[job_id]:
                del self._writers[job_id], self._writing[job_id]

    async def get(self, job_id: str) -> Job | None:
        return await self.run(self.sync.get, job_id)

    async def by_key(self, idem_key: str) -> Job | None:
        return await self.run(self.sync.by_key, idem_key)

    async def list(
        self, status: JobStatus | None = None, *, after_seq: int = 0, limit: int | None = None
    ) -> list[Job]:
        return await self.run(self.sync.list, status, after_seq=after_seq, limit=limit)

    async def evict(self, older_than: float) -> int:
        return await self.run(self.sync.evict, older_than)
