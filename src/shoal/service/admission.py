"""Admission: a request becomes a job record at the end of the line, or is refused."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from shoal.service.asyncstore import AsyncStore
from shoal.service.models import JobStatus, MetadataValue
from shoal.service.output import Outputs
from shoal.service.queue import Scheduler
from shoal.service.retries import Attempt, Callers, KeyReused
from shoal.service.runner import argv_problem, render_argv, takes_json
from shoal.service.settings import ServeSettings
from shoal.service.store import Job


class UnknownAgent(ValueError):
    pass


class PromptTooLong(ValueError):
    """The agent's command line could not carry this prompt."""


class ShuttingDown(Exception):
    """The service stopped admitting jobs: it is shutting down."""


@dataclass(frozen=True)
class Admitted:
    job: Job
    position: int  # 1 = next to start; 0 = running (or already finished, for a retry)
    again: bool  # a retry or a repeated Idempotency-Key: the job was made before


def new_job_id() -> str:
    # Time first, so ids sort roughly by submission in listings and directories.
    return f"{int(time.time()):x}{secrets.token_hex(4)}"


class Admission:
    def __init__(
        self,
        settings: ServeSettings,
        store: AsyncStore,
        scheduler: Scheduler[Job],
        outputs: Outputs,
        callers: Callers,
    ) -> None:
        self._settings = settings
        self._store = store
        self._scheduler = scheduler
        self._outputs = outputs
        self._callers = callers
        self.closed = False

    def close(self) -> None:
        """Admit nothing more (shutting down); retries still find their jobs."""
        self.closed = True

    async def _earlier(self, attempt: Attempt) -> Job | None:
        """The job this request repeats, or None when it needs a new one."""
        job = None
        if attempt.key is not None:
            job = await self._store.by_key(attempt.key)
            if job is not None and job.request_hash != attempt.fingerprint:
                raise KeyReused(attempt.key.partition(":")[2])
        elif attempt.retry:
            job_id = self._callers.retry_of(attempt.fingerprint)
            job = None if job_id is None else await self._store.get(job_id)
        if job is not None and job.status is JobStatus.interrupted:
            # The service stopped under it, not the agent: a retry is what it needs.
            await self._store.update(job.id, idem_key=None)
            return None
        return job

    async def submit(
        self,
        *,
        prompt: str,
        agent: str | None,
        attempt: Attempt,
        kind: str = "execute",
        model: str | None = None,
        ref: str | None = None,
        timeout_s: float | None = None,
        metadata: dict[str, MetadataValue] | None = None,
        save_branch: bool = False,
        messages: list[dict[str, str]] | None = None,
    ) -> Admitted:
        """The job for this request, made now or before; QueueFull, UnknownAgent, ..."""
        earlier = await self._earlier(attempt)
        if earlier is not None:
            return Admitted(earlier, await self._store.position(earlier.id) or 0, again=True)
        if self.closed:
            raise ShuttingDown
        name = agent or self._settings.agent_for_default
        if name not in self._settings.agents:
            raise UnknownAgent(name)
        job_id = new_job_id()
        template = self._settings.agents[name]
        argv, _ = render_argv(template, prompt=prompt, model=model or name, job_id=job_id)
        problem = argv_problem(argv)
        if problem is not None:
            raise PromptTooLong(f"for agent {name!r}, the prompt {problem}")
        job = Job(
            id=job_id,
            kind=kind,
            status=JobStatus.queued,
            prompt=prompt,
            agent=name,
            model=model,
            ref=ref,
            timeout_s=timeout_s or self._settings.default_timeout_s,
            metadata=metadata,
            save_branch=save_branch,
            queued_at=time.time(),
            idem_key=attempt.key,
            request_hash=attempt.fingerprint,
            messages=messages if takes_json(template) else None,
        )
        await self._store.enqueue(job, max_depth=self._settings.max_queue_depth)
        if not self._store.shared:  # in a fleet another node may run it: followers poll
            self._outputs.track(job.id)
        self._callers.made(attempt.fingerprint, job.id, waited_on=kind == "chat")
        await self._scheduler.pump()
        return Admitted(job, await self._store.position(job.id) or 0, again=False)
