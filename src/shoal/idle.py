"""How a process started after a run (the reaper, the refill) waits for a free core before
it starts its work: its imports, its connections, its DDL.

A lower CPU priority is not enough. Much of that work runs in the server's backends, and
those are not shoal's to renice: a descheduled backend that holds a lock other backends
need slows every run on the server (tried: with the background processes and their
backends at niceness 19, the tails of four concurrent runs got longer, 0.60 → 0.91 s).
And the start of a Python process at niceness 10 still lengthened those tails by about
0.3 s. So the work waits until the machine has had a core's worth of idle time for a
moment, which it has once the runs that ended together with this one have exited, and
never longer than :data:`MAX_WAIT_S`: a machine that is always busy still gets its pool
refilled and its schemas dropped.

Only psutil and the standard library here: this module is what a background process
imports first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

IDLE_CORES: Final = 1.0  # a core's worth of idle time over a window
WINDOW_S: Final = 0.25
MAX_WAIT_S: Final = 5.0


def idle_cores(window_s: float) -> float:
    """Cores' worth of idle CPU time on this machine over the next ``window_s`` seconds."""
    import psutil

    busy = psutil.cpu_percent(interval=window_s)
    return (100.0 - busy) / 100.0 * (psutil.cpu_count() or 1)


def wait_for_idle_core(
    max_wait_s: float = MAX_WAIT_S,
    window_s: float = WINDOW_S,
    measure: Callable[[float], float] = idle_cores,
) -> float:
    """Return once a window had :data:`IDLE_CORES` idle, or after ``max_wait_s``; the
    seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < max_wait_s:
        if measure(window_s) >= IDLE_CORES:
            break
    return time.monotonic() - started
