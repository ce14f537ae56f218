"""Serving the app with uvicorn, and stopping it gracefully on SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
from types import FrameType

import uvicorn
from fastapi import FastAPI

from shoal.service.settings import ServeSettings


class _Server(uvicorn.Server):
    """uvicorn's server, telling the job service the moment a signal asks it to stop.

    uvicorn waits for open connections to close before the app's shutdown runs, so an
    open stream, or a chat request waiting for its job, would keep it up. At the signal
    the job service admits and starts nothing more, ends streams and gives running jobs
    their grace; the connections then close on their own.
    """

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        service = getattr(self._app.state, "service", None)
        if service is not None:
            # Signal handlers run between two steps of the loop: hand the work to it.
            asyncio.get_running_loop().call_soon_threadsafe(service.begin_shutdown)


def run(app: FastAPI, settings: ServeSettings) -> None:
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        # A backstop only: streams end at the signal and jobs within their grace.
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 2,
    )
    _Server(config, app).run()
