"""Pacing of long answers: keep-alives while a job is silent, and an end on shutdown.

Clients and proxies drop connections that stay silent (a 4 s read timeout, a proxy's
60 s idle limit) although the job behind them is fine; a keep-alive every
``keepalive_s`` keeps them open for as long as the job takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from enum import Enum
from typing import Any

KEEPALIVE = ": keep-alive\n\n"  # an SSE comment: every client skips it
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# One server-sent event, as the OpenAPI document describes the items of a stream.
SSE_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {"event": {"type": "string"}, "data": {"type": "string"}},
}


class Pause(Enum):
    tick = "tick"  # nothing new for one interval
    stop = "stop"  # the service is shutting down


async def paced(
    source: AsyncIterator[str], interval: float, stopping: asyncio.Event
) -> AsyncIterator[str | Pause]:
    """The items of ``source``, a tick after each silent ``interval``, and one stop."""
    pending: asyncio.Future[Any] | None = None
    stop: asyncio.Future[Any] = asyncio.ensure_future(stopping.wait())
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(source))
            done, _ = await asyncio.wait(
                {pending, stop}, timeout=interval, return_when=asyncio.FIRST_COMPLETED
            )
            if pending in done:
                try:
                    item: str = pending.result()
                except StopAsyncIteration:
                    return
                pending = None
                yield item
            elif stop in done:
                yield Pause.stop
                return
            else:
                yield Pause.tick
    finally:
        stop.cancel()
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending


def sse(data: object, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n"
