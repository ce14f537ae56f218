"""After a restart: what the previous process left running or half done.

Jobs it was running are ``interrupted`` (their agents killed, their checkouts summarised
and removed); queued jobs keep their place in line, except chat requests, whose callers
were connected to the old process and would never read an answer.

In a fleet the records are shared: only the jobs whose checkouts the previous process left
in this node's state directory were its own; other nodes' jobs, and chat requests that
came through a node that stopped, are settled by the fleet once that node's heartbeat
expires (:mod:`.fleet`).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psutil

from shoal.service.asyncstore import AsyncStore
from shoal.service.execution import STOPPED_WHILE_RUNNING
from shoal.service.models import JobStatus
from shoal.service.runner import kill_group
from shoal.service.workspaces import WorkspaceError, Workspaces

log = logging.getLogger("shoal.serve")
InPool = Callable[..., Awaitable[Any]]


async def recover(store: AsyncStore, spaces: Workspaces, in_pool: InPool) -> list[str]:
    """Settle what the previous process left; the ids of the jobs still waiting in line."""
    now = time.time()
    leftovers = spaces.leftovers()
    if store.shared:
        found = [await store.get(job_id) for job_id in leftovers]
        running = [job for job in found if job is not None and job.status is JobStatus.running]
    else:
        running = await store.list(JobStatus.running)
    for job in running:
        await store.update(
            job.id, status=JobStatus.interrupted, finished_at=now, error=STOPPED_WHILE_RUNNING
        )
    if running:
        await in_pool(kill_leftover_agents, {job.id for job in running})
    for job_id in leftovers:
        await salvage(store, spaces, in_pool, job_id)
    if store.shared:
        return []
    waiting = []
    for job in await store.list(JobStatus.queued):
        if job.kind == "chat":
            await store.update(
                job.id,
                status=JobStatus.interrupted,
                finished_at=now,
                error="the service restarted before the request ran",
            )
            continue
        waiting.append(job.id)
    return waiting


async def salvage(store: AsyncStore, spaces: Workspaces, in_pool: InPool, job_id: str) -> None:
    """Keep what an interrupted job did (diff, branch if asked), then remove its checkout."""
    job = await store.get(job_id)
    space = spaces.workspace(job_id)
    if job is not None and (space.root / "start").exists() and (space.work / ".git").exists():
        try:
            diff, branch = await in_pool(spaces.finish, space, save_branch=job.save_branch)
            await store.update(job_id, diff=diff, branch=branch)
        except WorkspaceError as exc:
            log.warning("job %s: could not summarise its checkout: %s", job_id, exc)
    await in_pool(spaces.remove, job_id)
    if job is not None:
        await store.update(job_id, workspace=None)


def kill_leftover_agents(job_ids: set[str]) -> None:
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
