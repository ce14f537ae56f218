"""Running one agent process: argv template, no shell, own process group, time limit, cancel."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import re
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from shoal.service.settings import PROMPT, STDIN_JSON

Sink = Callable[[str], None]
# After SIGTERM the group gets this long to exit before SIGKILL.
KILL_GRACE_S = 2.0


@dataclass(frozen=True)
class Outcome:
    exit_code: int | None
    timed_out: bool
    cancelled: bool


_PLACEHOLDER = re.compile(r"\{(prompt|prompt_file|model|job_id)\}")
PROMPT_FILE = "{prompt_file}"
# Linux caps one argument at 32 pages (MAX_ARG_STRLEN, its NUL included): a longer one
# fails the exec with E2BIG, after the checkout was made.
MAX_ARG_BYTES = 32 * 4096 - 1


def render_argv(
    template: Sequence[str], *, prompt: str, model: str, job_id: str, prompt_file: str = ""
) -> tuple[list[str], bool]:
    """The argv for one job, and whether the prompt goes on stdin.

    One pass over each argument, so text that came in (a prompt holding ``{model}``) is
    never substituted again, and other braces in the template are left alone. A
    ``{stdin_json}`` argument is a marker, not an argument: stdin carries the request as
    JSON instead of the plain prompt. ``{prompt_file}`` is the path of a file holding the
    prompt, for agents that read it from there (no length limit, nothing on stdin).
    """
    values = {"prompt": prompt, "model": model, "job_id": job_id, "prompt_file": prompt_file}
    argv = [
        _PLACEHOLDER.sub(lambda m: values[m.group(1)], part)
        for part in template
        if part != STDIN_JSON
    ]
    return argv, not any(PROMPT in part or PROMPT_FILE in part for part in template)


def takes_file(template: Sequence[str]) -> bool:
    return any(PROMPT_FILE in part for part in template)


def takes_json(template: Sequence[str]) -> bool:
    return STDIN_JSON in template


def argv_problem(argv: Sequence[str]) -> str | None:
    """Why the kernel would refuse to start ``argv``, or None."""
    for part in argv:
        size = len(part.encode("utf-8", "surrogateescape"))
        if size > MAX_ARG_BYTES:
            return (
                f"makes a command-line argument of {size} bytes; Linux takes at most "
                f"{MAX_ARG_BYTES} in one argument (pass it on stdin or with {{prompt_file}})"
            )
    total = sum(len(part.encode("utf-8", "surrogateescape")) + 1 for part in argv)
    total += sum(len(k) + len(v) + 2 for k, v in os.environ.items())
    limit = os.sysconf("SC_ARG_MAX") if hasattr(os, "sysconf") else 2**21
    if total > limit - 65536:  # room for the job's own environment variables
        return f"makes a command line of {total} bytes with the environment; the limit is {limit}"
    return None


def kill_group(pgid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _pump(stream: asyncio.StreamReader, sink: Sink) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while chunk := await stream.read(65536):
        text = decoder.decode(chunk)
        if text:
            sink(text)
    tail = decoder.decode(b"", final=True)
    if tail:
        sink(tail)


class Process:
    """An agent process started in its own session, so its whole group can be killed."""

    def __init__(self, proc: asyncio.subprocess.Process, readers: list[asyncio.Task[None]]) -> None:
        self._proc = proc
        self._readers = readers
        self.pid = proc.pid
        self._feeder: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        stdin_text: str | None,
        on_stdout: Sink,
        on_stderr: Sink,
    ) -> Process:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=dict(env),
            stdin=asyncio.subprocess.PIPE if stdin_text is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        readers = [
            asyncio.create_task(_pump(proc.stdout, on_stdout)),
            asyncio.create_task(_pump(proc.stderr, on_stderr)),
        ]
        self = cls(proc, readers)
        if stdin_text is not None:
            self._feeder = asyncio.create_task(self._feed(stdin_text))
        return self

    async def _feed(self, text: str) -> None:
        assert self._proc.stdin is not None
        # An agent may exit without reading its stdin: a broken pipe is not our failure.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._proc.stdin.write(text.encode("utf-8"))
            await self._proc.stdin.drain()
            self._proc.stdin.close()

    async def wait(self, timeout_s: float, cancel: asyncio.Event) -> Outcome:
        """Wait for exit, the time limit or ``cancel``; the process group never outlives this."""
        exited = asyncio.create_task(self._proc.wait())
        cancelled = asyncio.create_task(cancel.wait())
        try:
            done, _ = await asyncio.wait(
                {exited, cancelled}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            stopped = exited not in done
            if stopped:
                await self._stop(exited)
        finally:
            cancelled.cancel()
            # Children the agent left behind would keep the pipes open and the checkout busy.
            kill_group(self.pid)
            if not exited.done():
                await self._stop(exited)
            await self._drain()
        code = self._proc.returncode
        return Outcome(
            exit_code=None if stopped else code,
            timed_out=stopped and not cancel.is_set(),
            cancelled=stopped and cancel.is_set(),
        )

    async def _stop(self, exited: asyncio.Task[int]) -> None:
        kill_group(self.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(exited), KILL_GRACE_S)
        except TimeoutError:
            kill_group(self.pid)
            await exited
        kill_group(self.pid)

    async def _drain(self) -> None:
        # A grandchild in another group could still hold the pipes; do not wait forever.
        _, pending = await asyncio.wait(self._readers, timeout=KILL_GRACE_S)
        for task in pending:
            task.cancel()
