"""The job service: the parts wired together, start and stop, and what handlers ask of it.

Admission (:mod:`.admission`) puts jobs in line, the scheduler (:mod:`.queue`) starts them
in the store's order, execution (:mod:`.execution`) runs each, :mod:`.output` keeps what
they print, :mod:`.recovery` settles what a previous process left.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from shoal import naming
from shoal.service.admission import Admission, Admitted, UnknownAgent
from shoal.service.asyncstore import STORE_THREADS, AsyncStore
from shoal.service.execution import Execution
from shoal.service.fleet import Fleet
from shoal.service.models import FleetHealth, JobStatus, JobView
from shoal.service.output import REMOTE_POLL_S, Outputs
from shoal.service.pgstore import PgStore
from shoal.service.queue import QueueFull, Scheduler
from shoal.service.recovery import recover
from shoal.service.retries import Callers
from shoal.service.runner import KILL_GRACE_S
from shoal.service.settings import ServeSettings
from shoal.service.store import Job, JobStore, SqliteStore
from shoal.service.workspaces import Workspaces

log = logging.getLogger("shoal.serve")
T = TypeVar("T")
__all__ = ["JobService", "QueueFull", "UnknownAgent"]


def make_state_dir(path: Path) -> None:
    """Prompts, outputs and checkouts live here: private to the service's user.

    chmod as well as mkdir's mode: the umask narrows the mode, and a directory made
    before (by an older version, or by hand) keeps whatever mode it had.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def node_id(settings: ServeSettings) -> str:
    """A new name for this process: a restarted node is a new node of the fleet."""
    name = settings.node_name or socket.gethostname()
    return naming.serve_node_id(name, settings.port, os.urandom(4).hex())


def open_store(settings: ServeSettings, node: str) -> JobStore:
    """The fleet's PostgreSQL queue with ``queue``; this host's SQLite file otherwise."""
    if settings.queue is not None:
        return PgStore(
            settings.queue,
            node,
            capacity=settings.max_concurrency,
            node_timeout_s=settings.node_timeout_s,
            schema=settings.queue_schema,
        )
    return SqliteStore(settings.state_dir / "jobs.sqlite3", node)


def awaited(store: JobStore) -> AsyncStore:
    """The service's calls of ``store``: PostgreSQL's in threads, SQLite's inline."""
    return AsyncStore(store, threads=STORE_THREADS if isinstance(store, PgStore) else 0)


class JobService:
    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        make_state_dir(settings.state_dir)
        self.store = awaited(open_store(settings, node_id(settings)))
        self.spaces = Workspaces.from_settings(settings)
        self.outputs = Outputs(self.store, settings.max_output_chars)
        self.execution = Execution(settings, self.store, self.spaces, self.outputs, self._in_pool)
        self.scheduler = Scheduler(
            self.store, self.execution.run, capacity=settings.max_concurrency
        )
        self.callers = Callers(settings.reattach_s, self.cancel)
        self.admission = Admission(settings, self.store, self.scheduler, self.outputs, self.callers)
        self.fleet: Fleet | None = None
        if isinstance(self.store.sync, PgStore):
            self.fleet = Fleet(
                self.store.sync,
                self.store,
                self.scheduler,
                self.execution,
                self._in_pool,
                heartbeat_s=settings.heartbeat_s,
            )
        # Set on SIGTERM: streams end, nothing new is admitted or started.
        self.stopping = asyncio.Event()
        self.started_at = time.time()
        self._draining: asyncio.Task[None] | None = None
        self._evictor: asyncio.Task[None] | None = None
        self._checkpointer: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[object]] = set()
        # Checkouts wait on git, not the CPU: the default executor (cores + 4 threads) would
        # hold back preparation when more jobs than that start together.
        self._pool = ThreadPoolExecutor(settings.max_concurrency + 2, "shoal-workspace")

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self._in_pool(self.spaces.ensure_base)
        self.spaces.start()
        waiting = await recover(self.store, self.spaces, self._in_pool)
        await self.evict()
        for job_id in waiting:
            self.outputs.track(job_id)
        if self.fleet is not None:
            await self.fleet.start()
        await self.scheduler.pump()
        self._evictor = asyncio.create_task(self._evict_periodically())
        self._checkpointer = asyncio.create_task(self.outputs.checkpoint_periodically())

    def begin_shutdown(self) -> None:
        """Admit and start nothing more, end streams, give running jobs their grace."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        self.admission.close()
        self.scheduler.stop_starting()
        self._draining = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            await self._answer_waiting_chats()
        except Exception:  # a lost queue: the running jobs still get their grace
            log.exception("could not answer the chat requests still waiting")
        if not await self.scheduler.wait_idle(self.settings.shutdown_grace_s):
            log.warning("interrupting the jobs still running after the shutdown grace")
            await self.scheduler.close()
        # Queued jobs keep their place for the next start; their followers stop waiting.
        self.outputs.finish_all()

    async def _answer_waiting_chats(self) -> None:
        now = time.time()
        for job in await self.store.list(JobStatus.queued):
            # Its caller is answered now; a restart would drop it. In a fleet, only the
            # requests that came through this node have their callers here.
            mine = not self.store.shared or job.origin == self.store.node
            if job.kind == "chat" and mine:
                await self.store.update(
                    job.id,
                    status=JobStatus.interrupted,
                    finished_at=now,
                    error="the service stopped before the request ran",
                )
                self.execution.finished(job.id)

    async def stop(self) -> None:
        if self._draining is not None:
            await self._draining
        self.callers.close()
        for task in (self._evictor, self._checkpointer):
            if task is None:
                continue
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # a bug in the task: say so, and still close everything
                log.exception("a background task of the job service failed")
        await self.scheduler.close()
        if self.fleet is not None:
            await self.fleet.stop()
        await self._in_pool(self.spaces.close)
        await self.store.close()
        self._pool.shutdown(wait=False)

    async def _in_pool(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, functools.partial(call, *args, **kwargs)
        )

    async def evict(self) -> int:
        return await self.store.evict(time.time() - self.settings.job_ttl_seconds)

    async def _evict_periodically(self) -> None:
        period = min(60.0, max(self.settings.job_ttl_seconds / 4, 0.5))
        while True:
            await asyncio.sleep(period)
            await self.evict()

    async def checkpoint(self) -> int:
        return await self.outputs.checkpoint()

    # -- requests --------------------------------------------------------------------------

    async def submit(self, **request: Any) -> Admitted:
        return await self.admission.submit(**request)

    async def get(self, job_id: str) -> Job | None:
        job = await self.store.get(job_id)
        return None if job is None else self.outputs.overlay(job)

    async def jobs(
        self, status: JobStatus | None = None, *, after_seq: int = 0, limit: int | None = None
    ) -> list[Job]:
        listed = await self.store.list(status, after_seq=after_seq, limit=limit)
        return [self.outputs.overlay(job) for job in listed]

    async def view(self, job: Job) -> JobView:
        queued = job.status is JobStatus.queued
        return JobView(
            job_id=job.id,
            kind="chat" if job.kind == "chat" else "execute",
            status=job.status,
            agent=job.agent,
            ref=job.ref,
            metadata=job.metadata,
            exit_code=job.exit_code,
            output=job.output,
            output_truncated=job.output_truncated,
            stderr=job.stderr,
            error=job.error,
            queued_at=job.queued_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            position=await self.store.position(job.id) if queued else None,
            workspace=job.workspace,
            node=job.node,
            diff=job.diff,  # type: ignore[arg-type]
            branch=job.branch,
        )

    async def cancel(self, job_id: str) -> Job | None:
        job = await self.store.get(job_id)
        if job is None or job.status.finished:
            return job
        if await self.store.withdraw(job_id, time.time()):
            self.execution.finished(job_id)
            return await self.get(job_id)
        # Running, or claimed and about to start: the execution checks this flag; in a
        # fleet the node running it is told, and stops it.
        await self.store.request_cancel(job_id)
        if not self.store.shared or job_id in self.scheduler.running():
            self.execution.cancel(job_id)
        # The agent gets its grace to exit; a node that dies meanwhile is declared so.
        bound = self.settings.node_timeout_s + self.settings.heartbeat_s + KILL_GRACE_S + 30
        try:
            await asyncio.wait_for(self.wait(job_id), bound)
        except TimeoutError:
            log.warning("job %s was asked to stop %g s ago and still runs", job_id, bound)
        return await self.get(job_id)

    async def wait(self, job_id: str) -> Job | None:
        """The job once finished (now, when it is not running or queued here and the store
        is this host's alone); a job of a fleet is watched through its record."""
        while True:
            live = self.outputs.get(job_id)
            if live is not None:
                await live.finished.wait()
                return await self.get(job_id)
            job = await self.get(job_id)
            if job is None or job.status.finished or not self.store.shared:
                return job
            await asyncio.sleep(REMOTE_POLL_S)

    async def fleet_health(self) -> FleetHealth | None:
        return None if self.fleet is None else await self.fleet.health()

    def follow(self, job_id: str) -> AsyncIterator[str]:
        return self.outputs.follow(job_id)

    def spawn(self, work: Coroutine[Any, Any, object]) -> None:
        """Run ``work`` in the background, holding a reference so it is not collected."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
