"""Output of unfinished jobs: a bounded buffer per job for followers, saved periodically.

A job running on another node of a fleet is followed through its record instead: the
running node saves its output every checkpoint, with the count of characters it ever
produced, so a follower here yields exactly what is new.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator

import psycopg

from shoal.service.asyncstore import AsyncStore
from shoal.service.store import Job

log = logging.getLogger("shoal.serve")
# How often a running job's output is written to the store: what a crash can lose. One
# short transaction per job whose output changed.
OUTPUT_CHECKPOINT_S = 1.0
# With a fleet, followers on other nodes read the saved output: save it more often, and
# look for it as often.
SHARED_CHECKPOINT_S = 0.5
REMOTE_POLL_S = 0.25
STDERR_KEPT = 65536


class Live:
    """Output of a queued or running job, for followers; only the tail is kept."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: list[str] = []
        self.dropped = 0  # chunks trimmed from the front
        self.size = 0
        self.total = 0  # characters ever added, the trimmed ones included
        self.stderr = ""
        self.version = 0  # bumped on every change, so a checkpoint can skip unchanged jobs
        self.finished = asyncio.Event()
        # Replaced on every change: a follower waits on the one it saw, so none misses a wake-up.
        self.wake = asyncio.Event()

    def add(self, text: str) -> None:
        self.chunks.append(text)
        self.size += len(text)
        self.total += len(text)
        while self.size > self.limit and len(self.chunks) > 1:
            self.size -= len(self.chunks.pop(0))
            self.dropped += 1
        self.version += 1
        self.poke()

    def add_stderr(self, text: str) -> None:
        self.stderr = (self.stderr + text)[-STDERR_KEPT:]
        self.version += 1

    def poke(self) -> None:
        self.wake.set()
        self.wake = asyncio.Event()

    def output(self) -> tuple[str, bool]:
        text = "".join(self.chunks)
        return text[-self.limit :], self.dropped > 0 or len(text) > self.limit


class Outputs:
    """The :class:`Live` buffer of every unfinished job of this process."""

    def __init__(self, store: AsyncStore, limit: int) -> None:
        self._store = store
        self._limit = limit
        self._live: dict[str, Live] = {}
        self._saved: dict[str, int] = {}  # job id -> the Live.version last written to the store
        self.period = SHARED_CHECKPOINT_S if store.shared else OUTPUT_CHECKPOINT_S

    def track(self, job_id: str) -> Live:
        live = self._live.get(job_id)
        if live is None:
            live = self._live[job_id] = Live(self._limit)
        return live

    def get(self, job_id: str) -> Live | None:
        return self._live.get(job_id)

    def finish(self, job_id: str) -> None:
        """The job is over and its record final: wake every follower and forget the buffer."""
        live = self._live.pop(job_id, None)
        self._saved.pop(job_id, None)
        if live is not None:
            live.finished.set()
            live.poke()

    def finish_all(self) -> None:
        for job_id in list(self._live):
            self.finish(job_id)

    def overlay(self, job: Job) -> Job:
        """``job`` with the output produced so far, when it is still unfinished here."""
        live = self._live.get(job.id)
        if live is not None and not job.status.finished:
            job.output, job.output_truncated = live.output()
            job.stderr = live.stderr
        return job

    async def checkpoint(self) -> int:
        """Write the output of every job whose output changed since the last time; how many.

        A running job's output lives in memory until it finishes; this bounds what a crash
        of the service loses to one checkpoint period, and the job, marked interrupted on
        restart, keeps the rest.
        """
        written = 0
        for job_id, live in list(self._live.items()):
            version = live.version
            if version == self._saved.get(job_id, 0):
                continue
            output, truncated = live.output()
            await self._store.update(
                job_id,
                output=output,
                output_truncated=truncated,
                output_total=live.total,
                stderr=live.stderr,
            )
            if job_id in self._live:  # not finished meanwhile
                self._saved[job_id] = version
            written += 1
        return written

    async def checkpoint_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            try:
                await self.checkpoint()
            except (sqlite3.Error, psycopg.Error):  # a full disk, a lost server: next period
                log.exception("could not save the output of running jobs")

    async def follow(self, job_id: str) -> AsyncIterator[str]:
        """The job's output as it is produced, from the start (or its kept tail)."""
        live = self._live.get(job_id)
        if live is None:
            async for text in self._follow_record(job_id):
                yield text
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

    async def _follow_record(self, job_id: str) -> AsyncIterator[str]:
        """The output of a job not running here, from its record: what is saved when it has
        finished, and, in a fleet, what the node running it saves until it finishes."""
        seen = 0  # characters of the job's output already yielded
        while True:
            job = await self._store.get(job_id)
            if job is None:
                return
            new = job.output_total - seen if job.output_total else len(job.output) - seen
            if new > 0 and job.output:
                # Only the kept tail is saved: when more is new than kept, the tail is all.
                yield job.output[-new:] if new < len(job.output) else job.output
                seen += new
            # A job claimed here meanwhile is followed on: this node saves its output too.
            if job.status.finished or not self._store.shared:
                return
            await asyncio.sleep(REMOTE_POLL_S)
