"""Running git (and the prepare command) for checkouts: bounded in time, stoppable at once.

Each process starts in its own session, so a timeout or a shutdown kills everything it
started (a prepare script's children, git's helpers), not only its first process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from shoal.conninfo import mask
from shoal.errors import ShoalError
from shoal.service.runner import kill_group

_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "SSH_ASKPASS": ""}


class WorkspaceError(ShoalError):
    """A checkout could not be prepared or saved; the message carries git's own words."""


class Processes:
    """The processes one builder runs, so that another thread can stop them all at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[str]] = set()
        self.stopped = False

    def add(self, proc: subprocess.Popen[str]) -> None:
        with self._lock:
            self._running.add(proc)
            stopped = self.stopped
        if stopped:  # started after stop(): it must not outlive the builder either
            _kill(proc)

    def discard(self, proc: subprocess.Popen[str]) -> None:
        with self._lock:
            self._running.discard(proc)

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            running = list(self._running)
        for proc in running:
            _kill(proc)


def _kill(proc: subprocess.Popen[str]) -> None:
    kill_group(proc.pid, signal.SIGKILL)  # its own session: the group id is its pid


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None,
    env: Mapping[str, str] | None,
    timeout: float,
    processes: Processes | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to its end; on a timeout its whole process group is killed first."""
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    if processes is not None:
        processes.add(proc)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        _kill(proc)
        proc.communicate()
        raise
    finally:
        if processes is not None:
            processes.discard(proc)
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


def git(
    *args: str, cwd: Path | None = None, timeout: float = 600, processes: Processes | None = None
) -> str:
    """git's standard output, or WorkspaceError with its (masked) error output."""
    env = {**os.environ, **_GIT_ENV}
    try:
        done = run(["git", *args], cwd=cwd, env=env, timeout=timeout, processes=processes)
    except subprocess.TimeoutExpired:
        raise WorkspaceError(f"git {args[0]} took longer than {timeout:.0f} s") from None
    if done.returncode != 0:
        words = mask(done.stderr.strip()[-2000:])
        raise WorkspaceError(f"git {mask(' '.join(args))} failed ({done.returncode}): {words}")
    return done.stdout
