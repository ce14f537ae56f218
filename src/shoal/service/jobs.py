"""The job service: admission, the life of one job, recovery after a restart, eviction."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import psutil

from shoal.service.models import JobStatus, JobView
from shoal.service.queue import QueueFull, Scheduler
from shoal.service.runner import Outcome, Process, kill_group, render_argv
from shoal.service.settings import ENV_PREFIX, ServeSettings
from shoal.service.store import Job, JobStore
from shoal.service.workspaces import Workspace, WorkspaceError, Workspaces

log = logging.getLogger("shoal.serve")
T = TypeVar("T")
# How often a running job's output is written to the store: what a crash can lose. One
# short SQLite transaction per job whose output changed, on the event loop.
OUTPUT_CHECKPOINT_S = 1.0
__all__ = ["JobService", "QueueFull", "UnknownAgent"]


class UnknownAgent(ValueError):
    pass


class Live:
    """Output of a queued or running job, for followers; only the tail is kept."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: list[str] = []
        self.dropped = 0  # chunks trimmed from the front
        self.size = 0
        self.stderr = ""
        self.version = 0  # bumped on every change, so a checkpoint can skip unchanged jobs
        self.finished = asyncio.Event()
        # Replaced on every change: a follower waits on the one it saw, so none misses a wake-up.
        self.wake = asyncio.Event()

    def add(self, text: str) -> None:
        self.chunks.append(text)
        self.size += len(text)
        while self.size > self.limit and len(self.chunks) > 1:
            self.size -= len(self.chunks.pop(0))
            self.dropped += 1
        self.version += 1
        self.poke()

    def add_stderr(self, text: str) -> None:
        self.stderr = (self.stderr + text)[-65536:]
        self.version += 1

    def poke(self) -> None:
        self.wake.set()
        self.wake = asyncio.Event()

    def output(self) -> tuple[str, bool]:
        text = "".join(self.chunks)
        return text[-self.limit :], self.dropped > 0 or len(text) > self.limit


def new_job_id() -> str:
    # Time first, so ids sort roughly by submission in listings and directories.
    return f"{int(time.time()):x}{secrets.token_hex(4)}"


class JobService:
    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        # Prompts, outputs and checkouts live here: private to the service's user.
        settings.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.store = JobStore(settings.state_dir / "jobs.sqlite3")
        self.spaces = Workspaces(
            settings.state_dir, settings.repo, refresh_s=settings.base_refresh_s
        )
        self.scheduler = Scheduler(
            self._execute, capacity=settings.max_concurrency, max_depth=settings.max_queue_depth
        )
        self._live: dict[str, Live] = {}
        self._saved: dict[str, int] = {}  # job id -> the Live.version last written to the store
        self._cancel: dict[str, asyncio.Event] = {}
        self._evictor: asyncio.Task[None] | None = None
        self._checkpointer: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[object]] = set()
        # Checkouts wait on git, not the CPU: the default executor (cores + 4 threads) would
        # hold back preparation when more jobs than that start together.
        self._pool = ThreadPoolExecutor(settings.max_concurrency + 2, "shoal-workspace")

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self._in_pool(self.spaces.ensure_base)
        now = time.time()
        running = self.store.list(JobStatus.running)
        for job in running:
            self.store.update(job.id, status=JobStatus.interrupted, finished_at=now,
                              error="the service stopped while the job ran")  # fmt: skip
        if running:
            await self._in_pool(_kill_leftover_agents, {job.id for job in running})
        for job_id in self.spaces.leftovers():
            await self._salvage(job_id)
        self.evict()
        for job in self.store.list(JobStatus.queued):
            if job.kind == "chat":
                # Its caller's connection died with the old process: nobody would read it.
                self.store.update(job.id, status=JobStatus.interrupted, finished_at=now,
                                  error="the service restarted before the request ran")  # fmt: skip
                continue
            self._track(job.id)
            self.scheduler.admit(job.id, check_depth=False)
        self._evictor = asyncio.create_task(self._evict_periodically())
        self._checkpointer = asyncio.create_task(self._checkpoint_periodically())

    async def stop(self) -> None:
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
        self.store.close()
        self._pool.shutdown(wait=False)

    async def _salvage(self, job_id: str) -> None:
        """Keep what an interrupted job did (diff, branch if asked), then remove its checkout."""
        job = self.store.get(job_id)
        space = self.spaces.workspace(job_id)
        if job is not None and (space.root / "start").exists() and (space.work / ".git").exists():
            try:
                diff, branch = await self._in_pool(
                    self.spaces.finish, space, save_branch=job.save_branch
                )
                self.store.update(job_id, diff=diff, branch=branch)
            except WorkspaceError as exc:
                log.warning("job %s: could not summarise its checkout: %s", job_id, exc)
        await self._in_pool(self.spaces.remove, job_id)
        if job is not None:
            self.store.update(job_id, workspace=None)

    async def _in_pool(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, functools.partial(call, *args, **kwargs)
        )

    def evict(self) -> int:
        return self.store.evict(time.time() - self.settings.job_ttl_seconds)

    async def _evict_periodically(self) -> None:
        period = min(60.0, max(self.settings.job_ttl_seconds / 4, 0.5))
        while True:
            await asyncio.sleep(period)
            self.evict()

    def checkpoint(self) -> int:
        """Write the output of every job whose output changed since the last time; how many.

        A running job's output lives in memory until it finishes; this bounds what a crash
        of the service loses to one checkpoint period, and the job, marked interrupted on
        restart, keeps the rest.
        """
        written = 0
        for job_id, live in self._live.items():
            if live.version == self._saved.get(job_id, 0):
                continue
            output, truncated = live.output()
            self.store.update(job_id, output=output, output_truncated=truncated, stderr=live.stderr)
            self._saved[job_id] = live.version
            written += 1
        return written

    async def _checkpoint_periodically(self) -> None:
        while True:
            await asyncio.sleep(OUTPUT_CHECKPOINT_S)
            try:
                self.checkpoint()
            except sqlite3.Error:  # e.g. a full disk: try again next period, jobs go on
                log.exception("could not save the output of running jobs")

    # -- requests --------------------------------------------------------------------------

    def submit(
        self,
        *,
        prompt: str,
        agent: str | None,
        kind: str = "execute",
        model: str | None = None,
        ref: str | None = None,
        timeout_s: float | None = None,
        metadata: dict[str, str | int | float | bool | None] | None = None,
        save_branch: bool = False,
    ) -> tuple[Job, int]:
        name = agent or self.settings.agent_for_default
        if name not in self.settings.agents:
            raise UnknownAgent(name)
        if self.scheduler.active + self.scheduler.queued >= self.settings.max_queue_depth:
            raise QueueFull(name)
        job = Job(
            id=new_job_id(), kind=kind, status=JobStatus.queued, prompt=prompt, agent=name,
            model=model, ref=ref, timeout_s=timeout_s or self.settings.default_timeout_s,
            metadata=metadata, save_branch=save_branch, queued_at=time.time(),
        )  # fmt: skip
        self.store.add(job)
        self._track(job.id)
        return job, self.scheduler.admit(job.id, check_depth=False)

    def _track(self, job_id: str) -> None:
        self._live[job_id] = Live(self.settings.max_output_chars)
        self._cancel[job_id] = asyncio.Event()

    def get(self, job_id: str) -> Job | None:
        job = self.store.get(job_id)
        return None if job is None else self._with_live_output(job)

    def jobs(
        self, status: JobStatus | None = None, *, after_seq: int = 0, limit: int | None = None
    ) -> list[Job]:
        listed = self.store.list(status, after_seq=after_seq, limit=limit)
        return [self._with_live_output(job) for job in listed]

    def _with_live_output(self, job: Job) -> Job:
        live = self._live.get(job.id)
        if live is not None and not job.status.finished:
            job.output, job.output_truncated = live.output()
            job.stderr = live.stderr
        return job

    def view(self, job: Job) -> JobView:
        return JobView(
            job_id=job.id, kind="chat" if job.kind == "chat" else "execute", status=job.status,
            agent=job.agent, ref=job.ref, metadata=job.metadata, exit_code=job.exit_code,
            output=job.output, output_truncated=job.output_truncated, stderr=job.stderr,
            error=job.error, queued_at=job.queued_at, started_at=job.started_at,
            finished_at=job.finished_at, position=self.scheduler.position(job.id)
            if job.status is JobStatus.queued else None,
            workspace=job.workspace, diff=job.diff, branch=job.branch,  # type: ignore[arg-type]
        )  # fmt: skip

    async def cancel(self, job_id: str) -> Job | None:
        job = self.store.get(job_id)
        if job is None or job.status.finished:
            return job
        if self.scheduler.withdraw(job_id):
            self.store.update(job_id, status=JobStatus.cancelled, finished_at=time.time())
            self._finish_live(job_id)
        elif job_id in self._cancel:
            # Running, or holding a slot and about to start: _execute checks this flag.
            self._cancel[job_id].set()
            await self.wait(job_id)
        return self.get(job_id)

    async def wait(self, job_id: str) -> Job | None:
        live = self._live.get(job_id)
        if live is not None:
            await live.finished.wait()
        return self.get(job_id)

    async def follow(self, job_id: str) -> AsyncIterator[str]:
        """The job's output as it is produced, from the start (or its kept tail)."""
        live = self._live.get(job_id)
        if live is None:
            job = self.store.get(job_id)
            if job is not None and job.output:
                yield job.output
            return
        seen = 0  # absolute chunk number
        while True:
            wake = live.wake
            fresh = live.chunks[max(seen - live.dropped, 0) :]
            seen = live.dropped + len(live.chunks)
            for chunk in fresh:
                yield chunk
            if not fresh:
                if live.finished.is_set():
                    return
                await wake.wait()

    def spawn(self, work: Coroutine[Any, Any, object]) -> None:
        """Run ``work`` in the background, holding a reference so it is not collected."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- one job ---------------------------------------------------------------------------

    def _finish_live(self, job_id: str) -> None:
        live = self._live.pop(job_id, None)
        self._saved.pop(job_id, None)
        self._cancel.pop(job_id, None)
        if live is not None:
            live.finished.set()
            live.poke()

    def _env(self, job_id: str, home: Path) -> dict[str, str]:
        # Nothing of the service's own configuration reaches an agent: the token lives there.
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        env.update(
            HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
            XDG_CACHE_HOME=str(home / ".cache"), XDG_DATA_HOME=str(home / ".local/share"),
            XDG_STATE_HOME=str(home / ".local/state"), SHOAL_JOB_ID=job_id,
        )  # fmt: skip
        return env

    async def _execute(self, job_id: str) -> None:
        job = self.store.get(job_id)
        if job is None or job.status is not JobStatus.queued:
            self._finish_live(job_id)
            return
        if job_id not in self._live:
            self._track(job_id)
        live, cancel = self._live[job_id], self._cancel[job_id]
        if cancel.is_set():
            self.store.update(job_id, status=JobStatus.cancelled, finished_at=time.time())
            self._finish_live(job_id)
            return
        self.store.update(job_id, status=JobStatus.running, started_at=time.time())
        space: Workspace | None = None
        result: dict[str, object] = {}
        try:
            env = self._env(job_id, self.spaces.workspace(job_id).home)
            space = await self._in_pool(
                self.spaces.prepare, job_id, job.ref, prepare=self.settings.prepare, env=env,
                home_template=self.settings.home_template,
            )  # fmt: skip
            self.store.update(job_id, workspace=str(space.work))
            result = await self._run_agent(job, space, env, live, cancel)
        except WorkspaceError as exc:
            result = {"status": JobStatus.failed, "error": str(exc)}
        except OSError as exc:  # e.g. the disk is full or the home template unreadable
            log.exception("job %s could not be prepared", job_id)
            result = {"status": JobStatus.failed, "error": f"could not prepare the job: {exc}"}
        except asyncio.CancelledError:
            result = {"status": JobStatus.interrupted, "error": "the service stopped"}
            raise
        finally:
            await self._wrap_up(job, space, live, result)

    async def _run_agent(
        self, job: Job, space: Workspace, env: dict[str, str], live: Live, cancel: asyncio.Event
    ) -> dict[str, object]:
        if cancel.is_set():
            return {"status": JobStatus.cancelled}
        argv, on_stdin = render_argv(
            self.settings.agents[job.agent], prompt=job.prompt, model=job.model or job.agent,
            job_id=job.id,
        )  # fmt: skip
        try:
            proc = await Process.start(
                argv, cwd=space.work, env=env, stdin_text=job.prompt if on_stdin else None,
                on_stdout=live.add, on_stderr=live.add_stderr,
            )  # fmt: skip
        except OSError as exc:
            return {"status": JobStatus.failed, "error": f"cannot start agent {argv[0]!r}: {exc}"}
        with contextlib.suppress(psutil.Error):
            started = psutil.Process(proc.pid).create_time()
            self.store.update(job.id, pid=proc.pid, pid_started=started)
        # The time limit starts here: waiting in the queue and preparing never count.
        outcome = await proc.wait(job.timeout_s, cancel)
        return {"status": _status(outcome), "exit_code": outcome.exit_code}

    async def _wrap_up(
        self, job: Job, space: Workspace | None, live: Live, result: dict[str, object]
    ) -> None:
        if space is not None:
            try:
                result["diff"], result["branch"] = await self._in_pool(
                    self.spaces.finish, space, save_branch=job.save_branch
                )
            except (WorkspaceError, OSError) as exc:
                result["error"] = f"could not summarise the checkout: {exc}"
        await self._in_pool(self.spaces.remove, job.id)
        output, truncated = live.output()
        self.store.update(
            job.id, status=result.get("status", JobStatus.failed), finished_at=time.time(),
            output=output, output_truncated=truncated, stderr=live.stderr, workspace=None,
            **{k: v for k, v in result.items() if k != "status"},
        )  # fmt: skip
        self._finish_live(job.id)


def _status(outcome: Outcome) -> JobStatus:
    if outcome.cancelled:
        return JobStatus.cancelled
    if outcome.timed_out:
        return JobStatus.timed_out
    return JobStatus.completed if outcome.exit_code == 0 else JobStatus.failed


def _kill_leftover_agents(job_ids: set[str]) -> None:
    """Kill the process groups of agents the previous service left running.

    Only processes that provably belong to one of these jobs (``SHOAL_JOB_ID`` in their
    environment) are touched: a recorded pid alone may have been reused since.
    """
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("SHOAL_JOB_ID") in job_ids:
                kill_group(os.getpgid(proc.pid), signal.SIGKILL)
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
