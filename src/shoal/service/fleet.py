"""This node's part in a fleet of ``shoal serve`` nodes sharing one PostgreSQL queue.

Every ``heartbeat_s`` the node says it is alive, interrupts what dead nodes were running
(and kills their agents when they ran on this host), stops its own jobs that were
cancelled through another node or that the fleet no longer counts as its own, and looks
at the head of the line. Notifications make the last two immediate; the period is the
fallback when one is lost. Every store call goes through the node's
:class:`~shoal.service.asyncstore.AsyncStore`, off the event loop; the tick only asks the
scheduler to look at the line, so a claim waiting on the line's lock never delays the
heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from shoal import naming
from shoal.errors import first_line
from shoal.service.asyncstore import AsyncStore
from shoal.service.execution import Execution
from shoal.service.models import FleetHealth, NodeHealth
from shoal.service.pgstore import Listener, PgStore, QueueUnreachable
from shoal.service.queue import Scheduler
from shoal.service.recovery import kill_leftover_agents
from shoal.service.store import Job

log = logging.getLogger("shoal.serve")
InPool = Callable[..., Awaitable[Any]]


class Fleet:
    def __init__(
        self,
        store: PgStore,
        calls: AsyncStore,
        scheduler: Scheduler[Job],
        execution: Execution,
        in_pool: InPool,
        *,
        heartbeat_s: float,
    ) -> None:
        self.store = store
        self._calls = calls
        self._scheduler = scheduler
        self._execution = execution
        self._in_pool = in_pool
        self._heartbeat_s = heartbeat_s
        self._task: asyncio.Task[None] | None = None
        self._listener: Listener | None = None

    async def start(self) -> None:
        """Join the fleet: before this node claims anything, it is in the fleet."""
        await self._calls.run(self.store.beat)
        loop = asyncio.get_running_loop()

        def notified(channel: str, payload: str) -> None:  # on the listener's thread
            loop.call_soon_threadsafe(self._notified, channel, payload)

        self._listener = Listener(self.store.url, self.store.node, self.store.schema, notified)
        self._listener.start()
        self._task = loop.create_task(self._keep(), name="shoal-fleet")

    def _notified(self, channel: str, payload: str) -> None:
        if channel == naming.SERVE_LINE_CHANNEL:
            self._scheduler.pump_soon()
        elif channel == naming.SERVE_CANCEL_CHANNEL and payload in self._scheduler.running():
            self._execution.cancel(payload)

    async def _keep(self) -> None:
        while True:
            try:
                await self.tick()
            except (psycopg.Error, QueueUnreachable) as exc:
                log.warning("the queue did not answer: %s", first_line(exc))
            await asyncio.sleep(self._heartbeat_s)

    async def tick(self) -> None:
        # The heartbeat first: a node never finds itself dead.
        await self._calls.run(self.store.beat)
        reaped = await self._calls.run(self.store.reap, time.time())
        if reaped.running:
            log.warning("interrupted %d job(s) of nodes that stopped", len(reaped.running))
        here = {job_id for job_id, host in reaped.running.items() if host == self.store.host}
        if here:
            await self._in_pool(kill_leftover_agents, here)
        for job_id in await self._calls.run(self.store.to_stop, self._scheduler.running()):
            self._execution.cancel(job_id)
        self._scheduler.pump_soon()

    async def health(self) -> FleetHealth:
        nodes = await self._calls.run(self.store.fleet)
        alive = [n for n in nodes if n.alive]
        return FleetHealth(
            nodes=[
                NodeHealth(
                    node=n.node,
                    host=n.host,
                    alive=n.alive,
                    heartbeat_age_s=n.heartbeat_age_s,
                    running=n.running,
                    capacity=n.capacity,
                )
                for n in nodes
            ],
            running=sum(n.running for n in nodes),
            queued=await self._calls.queued(),
            capacity=sum(n.capacity for n in alive),
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._listener is not None:
            await self._in_pool(self._listener.stop)
        try:
            await self._calls.run(self.store.leave)
        except (psycopg.Error, QueueUnreachable) as exc:
            log.warning("could not leave the fleet (it will time out): %s", first_line(exc))
