"""Retries never run an agent twice.

A request that repeats an earlier one attaches to the job made for it:

* an ``Idempotency-Key`` header names the job for good (it is stored with the job, and
  lives as long as the job record); the same key with a different request is refused;
* a request with the OpenAI SDKs' retry marker (``x-stainless-retry-count`` above 0) and
  no key attaches to the last job made for the same request (same kind, same body) in
  this process, if that job still has a caller or lost its last one less than
  ``reattach_s`` ago.

A chat job whose callers all went away is cancelled once ``reattach_s`` has passed with
no retry attached to it; nobody would read its answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

IDEMPOTENCY_HEADER = "idempotency-key"
RETRY_COUNT_HEADER = "x-stainless-retry-count"
MAX_KEY_CHARS = 255


class KeyReused(ValueError):
    """The Idempotency-Key was already used for a different request."""


class BadKey(ValueError):
    """The Idempotency-Key header is empty or too long."""


@dataclass(frozen=True)
class Attempt:
    """What a request says about itself: its key, its fingerprint, whether it is a retry."""

    key: str | None
    fingerprint: str
    retry: bool


def attempt(kind: str, headers: Mapping[str, str], request: object) -> Attempt:
    """``request`` is the validated body, so spelling and key order do not matter."""
    raw_key = headers.get(IDEMPOTENCY_HEADER)
    key = None
    if raw_key is not None:
        raw_key = raw_key.strip()
        if not raw_key or len(raw_key) > MAX_KEY_CHARS:
            raise BadKey(f"expected 1 to {MAX_KEY_CHARS} characters, got {len(raw_key)}")
        key = f"{kind}:{raw_key}"
    canonical = json.dumps([kind, request], sort_keys=True, separators=(",", ":"))
    count = headers.get(RETRY_COUNT_HEADER, "0").strip()
    return Attempt(
        key=key,
        fingerprint=hashlib.sha256(canonical.encode()).hexdigest(),
        retry=count.isdigit() and int(count) > 0,
    )


class Callers:
    """Who waits on which job in this process, and the requests retries may attach to."""

    def __init__(self, reattach_s: float, cancel: Callable[[str], Awaitable[object]]) -> None:
        self._reattach_s = reattach_s
        self._cancel = cancel
        self._attached: dict[str, int] = {}
        self._left: dict[str, float] = {}  # job id -> when its last caller went away
        self._made: dict[str, str] = {}  # request fingerprint -> the job made for it
        self._fingerprints: dict[str, str] = {}  # and back
        self._reapers: dict[str, asyncio.Task[None]] = {}

    def made(self, fingerprint: str, job_id: str, *, waited_on: bool) -> None:
        """A job was made for this request; ``waited_on``: its caller waits for the answer."""
        self._forget_old()
        self._made[fingerprint] = job_id
        self._fingerprints[job_id] = fingerprint
        if not waited_on:  # answered at once: the retry window starts now
            self._left[job_id] = time.monotonic()

    def retry_of(self, fingerprint: str) -> str | None:
        """The job a retry of this request attaches to, if any."""
        self._forget_old()
        job_id = self._made.get(fingerprint)
        if job_id is None:
            return None
        if self._attached.get(job_id) or job_id not in self._left:
            return job_id
        return job_id if time.monotonic() - self._left[job_id] <= self._reattach_s else None

    def attach(self, job_id: str) -> None:
        self._attached[job_id] = self._attached.get(job_id, 0) + 1
        self._left.pop(job_id, None)
        reaper = self._reapers.pop(job_id, None)
        if reaper is not None:
            reaper.cancel()

    def detach(self, job_id: str, *, abandon: bool) -> None:
        """A caller is done; with ``abandon`` it left before the answer was ready."""
        left = self._attached.get(job_id, 1) - 1
        if left > 0:
            self._attached[job_id] = left
            return
        self._attached.pop(job_id, None)
        self._left[job_id] = time.monotonic()
        if abandon and job_id not in self._reapers:
            self._reapers[job_id] = asyncio.get_running_loop().create_task(self._reap(job_id))

    async def _reap(self, job_id: str) -> None:
        await asyncio.sleep(self._reattach_s)
        self._reapers.pop(job_id, None)
        if not self._attached.get(job_id):
            await self._cancel(job_id)

    def _forget_old(self) -> None:
        horizon = time.monotonic() - self._reattach_s
        for job_id, when in list(self._left.items()):
            if when < horizon:
                del self._left[job_id]
                fingerprint = self._fingerprints.pop(job_id, None)
                if fingerprint is not None and self._made.get(fingerprint) == job_id:
                    del self._made[fingerprint]

    def close(self) -> None:
        for reaper in self._reapers.values():
            reaper.cancel()
        self._reapers.clear()
