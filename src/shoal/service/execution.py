"""The life of one job once it holds a slot: checkout, agent run, summary, clean-up."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil

from shoal.service.asyncstore import AsyncStore
from shoal.service.models import JobStatus
from shoal.service.output import Live, Outputs
from shoal.service.runner import Outcome, Process, render_argv, takes_file, takes_json
from shoal.service.settings import ServeSettings
from shoal.service.store import Job
from shoal.service.workspaces import Workspace, WorkspaceError, Workspaces, checkout_env

log = logging.getLogger("shoal.serve")
# The same words as a restart uses: a job stopped by a shutdown is one a restart finds.
STOPPED_WHILE_RUNNING = "the service stopped while the job ran"
InPool = Callable[..., Awaitable[Any]]


class Execution:
    def __init__(
        self,
        settings: ServeSettings,
        store: AsyncStore,
        spaces: Workspaces,
        outputs: Outputs,
        in_pool: InPool,
    ) -> None:
        self._settings = settings
        self._store = store
        self._spaces = spaces
        self._outputs = outputs
        self._in_pool = in_pool
        self._cancel: dict[str, asyncio.Event] = {}

    def cancel(self, job_id: str) -> None:
        """Ask a running job to stop (or, claimed and not yet started, never to start)."""
        self._cancel.setdefault(job_id, asyncio.Event()).set()

    def finished(self, job_id: str) -> None:
        self._cancel.pop(job_id, None)
        self._outputs.finish(job_id)

    async def run(self, job: Job) -> None:
        """Run ``job``, already claimed from the line, to its end; the record is final after."""
        live = self._outputs.track(job.id)
        cancel = self._cancel.setdefault(job.id, asyncio.Event())
        if cancel.is_set():
            await self._store.update(job.id, status=JobStatus.cancelled, finished_at=time.time())
            self.finished(job.id)
            return
        space: Workspace | None = None
        result: dict[str, object] = {}
        try:
            env = self._env(job.id, self._spaces.workspace(job.id).home)
            space = await self._in_pool(
                self._spaces.prepare,
                job.id,
                job.ref,
                prepare=self._settings.prepare,
                env=env,
                home_template=self._settings.home_template,
            )
            await self._store.update(job.id, workspace=str(space.work))
            result = await self._run_agent(job, space, env, live, cancel)
        except WorkspaceError as exc:
            result = {"status": JobStatus.failed, "error": str(exc)}
        except OSError as exc:  # e.g. the disk is full or the home template unreadable
            log.exception("job %s could not be prepared", job.id)
            result = {"status": JobStatus.failed, "error": f"could not prepare the job: {exc}"}
        except asyncio.CancelledError:
            result = {"status": JobStatus.interrupted, "error": STOPPED_WHILE_RUNNING}
            raise
        finally:
            await self._wrap_up(job, space, live, result)

    def _env(self, job_id: str, home: Path) -> dict[str, str]:
        return checkout_env(home, job_id)

    async def _run_agent(
        self, job: Job, space: Workspace, env: dict[str, str], live: Live, cancel: asyncio.Event
    ) -> dict[str, object]:
        if cancel.is_set():
            return {"status": JobStatus.cancelled}
        template = self._settings.agents[job.agent]
        prompt_file = space.root / "prompt.txt"  # beside the checkout: never in its diff
        if takes_file(template):
            descriptor = os.open(prompt_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(job.prompt)
        argv, on_stdin = render_argv(
            template,
            prompt=job.prompt,
            model=job.model or job.agent,
            job_id=job.id,
            prompt_file=str(prompt_file),
        )
        stdin = stdin_json(job) if takes_json(template) else job.prompt
        try:
            proc = await Process.start(
                argv,
                cwd=space.work,
                env=env,
                stdin_text=stdin if on_stdin else None,
                on_stdout=live.add,
                on_stderr=live.add_stderr,
            )
        except OSError as exc:
            return {"status": JobStatus.failed, "error": f"cannot start agent {argv[0]!r}: {exc}"}
        started: float | None = None
        with contextlib.suppress(psutil.Error):
            started = psutil.Process(proc.pid).create_time()
        if started is not None:
            await self._store.update(job.id, pid=proc.pid, pid_started=started)
        # The time limit starts here: waiting in the queue and preparing never count.
        outcome = await proc.wait(job.timeout_s, cancel)
        return {"status": _status(outcome), "exit_code": outcome.exit_code}

    async def _wrap_up(
        self, job: Job, space: Workspace | None, live: Live, result: dict[str, object]
    ) -> None:
        if space is not None:
            try:
                result["diff"], result["branch"] = await self._in_pool(
                    self._spaces.finish, space, save_branch=job.save_branch
                )
            except (WorkspaceError, OSError) as exc:
                result["error"] = f"could not summarise the checkout: {exc}"
        await self._in_pool(self._spaces.remove, job.id)
        output, truncated = live.output()
        await self._store.update(
            job.id,
            status=result.get("status", JobStatus.failed),
            finished_at=time.time(),
            output=output,
            output_truncated=truncated,
            output_total=live.total,
            stderr=live.stderr,
            workspace=None,
            **{k: v for k, v in result.items() if k != "status"},
        )
        self.finished(job.id)


def stdin_json(job: Job) -> str:
    """What an agent whose template asks for ``{stdin_json}`` reads on stdin."""
    messages = job.messages or [{"role": "user", "content": job.prompt}]
    return json.dumps({"model": job.model or job.agent, "messages": messages})


def _status(outcome: Outcome) -> JobStatus:
    if outcome.cancelled:
        return JobStatus.cancelled
    if outcome.timed_out:
        return JobStatus.timed_out
    return JobStatus.completed if outcome.exit_code == 0 else JobStatus.failed
