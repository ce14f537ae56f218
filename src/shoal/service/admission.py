"""Admission: a request becomes a job record at the end of the line, or is refused."""

from __future__ import annotations

import secrets
import time

from shoal.service.models import JobStatus, MetadataValue
from shoal.service.output import Outputs
from shoal.service.queue import JobQueue, Scheduler
from shoal.service.settings import ServeSettings
from shoal.service.store import Job


class UnknownAgent(ValueError):
    pass


def new_job_id() -> str:
    # Time first, so ids sort roughly by submission in listings and directories.
    return f"{int(time.time()):x}{secrets.token_hex(4)}"


class Admission:
    def __init__(
        self, settings: ServeSettings, queue: JobQueue, scheduler: Scheduler, outputs: Outputs
    ) -> None:
        self._settings = settings
        self._queue = queue
        self._scheduler = scheduler
        self._outputs = outputs

    def submit(
        self,
        *,
        prompt: str,
        agent: str | None,
        kind: str = "execute",
        model: str | None = None,
        ref: str | None = None,
        timeout_s: float | None = None,
        metadata: dict[str, MetadataValue] | None = None,
        save_branch: bool = False,
    ) -> tuple[Job, int]:
        """The new job and its position (0 = already running); QueueFull, UnknownAgent."""
        name = agent or self._settings.agent_for_default
        if name not in self._settings.agents:
            raise UnknownAgent(name)
        job = Job(
            id=new_job_id(),
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
        )
        self._queue.enqueue(job, max_depth=self._settings.max_queue_depth)
        self._outputs.track(job.id)
        self._scheduler.pump()
        return job, self._queue.position(job.id) or 0
