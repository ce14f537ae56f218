"""Which namespace this process uses: forced, inherited from its ``shoal run``, or fresh.

A namespace exported in the environment is kept only when the runner that exported it
is this process or an ancestor of it. A shell that still exports one from an earlier run
would otherwise make the next run reuse it and collide with anything else using it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import psutil

from shoal import naming

Origin = Literal["fresh", "forced", "runner", "controller"]


@dataclass(frozen=True)
class Namespace:
    token: str
    origin: Origin

    def describe(self) -> str:
        why = {
            "fresh": "fresh for this invocation",
            "forced": f"forced by {naming.ENV_NAMESPACE_FORCE}",
            "runner": "from the shoal run that started this pytest",
            "controller": "from the xdist controller",
        }[self.origin]
        return f"{self.token} ({why})"


def fresh() -> Namespace:
    return Namespace(naming.new_namespace(os.getpid(), int(time.time()), os.urandom(4)), "fresh")


def is_ancestor(pid: int, started: float) -> bool:
    """True when process ``pid``, started at ``started``, is this process or an ancestor.

    This process counts because `shoal run` runs pytest in its own process. The start
    time guards against PID reuse: a recycled PID belongs to another process.
    """
    try:
        me = psutil.Process()
        for process in (me, *me.parents()):
            if process.pid == pid and abs(process.create_time() - started) < 1.0:
                return True
    except psutil.Error:
        return False
    return False


def resolve(
    environ: Mapping[str, str],
    forced: str | None,
    *,
    ancestor: Callable[[int, float], bool] = is_ancestor,
) -> Namespace:
    """The namespace for a controller (or a plain, non-xdist pytest) process.

    ``forced`` has already been validated by the settings loader.
    """
    if forced is not None:
        return Namespace(forced, "forced")
    exported = environ.get(naming.ENV_NAMESPACE)
    runner = naming.parse_runner_token(environ.get(naming.ENV_RUNNER, ""))
    if exported and naming.is_namespace(exported) and runner and ancestor(*runner):
        return Namespace(exported, "runner")
    return fresh()
