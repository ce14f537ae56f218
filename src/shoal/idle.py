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
refilled and its schemas dropped. (1 s instead of 5 s, tried: four runs' tails 0.29 and
0.33 s against 0.25 and 0.27 s, since the runs ending together end up to a second apart.)

This module is what a background process imports first, and it imports it while the
runs it waits for are still exiting: so only ``os`` and ``time`` here (not even typing).
On Linux the idle time is read from ``/proc/stat`` directly; importing psutil for it
would take most of this process's start (measured: 50 of 110 ms of CPU, each time).
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False  # not typing's (see above); mypy treats it as true
if TYPE_CHECKING:
    from collections.abc import Callable

IDLE_CORES = 1.0  # a core's worth of idle time over a window
WINDOW_S = 0.25
MAX_WAIT_S = 5.0
_PROC_STAT = "/proc/stat"


def idle_cores(window_s: float) -> float:
    """Cores' worth of idle CPU time on this machine over the next ``window_s`` seconds."""
    before = _cpu_times()
    if before is None:  # not Linux
        import psutil

        busy = psutil.cpu_percent(interval=window_s)
        return (100.0 - busy) / 100.0 * (os.cpu_count() or 1)
    time.sleep(window_s)
    after = _cpu_times()
    if after is None:
        return 0.0
    total = after[0] - before[0]
    idle = after[1] - before[1]
    return idle / total * (os.cpu_count() or 1) if total > 0 else 0.0


def _cpu_times() -> tuple[int, int] | None:
    """(all, idle) jiffies of every CPU since boot, from ``/proc/stat``'s ``cpu`` line;
    None where there is no such file."""
    try:
        with open(_PROC_STAT, "rb") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if fields[:1] != [b"cpu"]:
        return None
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    ticks = [int(f) for f in fields[1:9]]
    return sum(ticks), ticks[3] + ticks[4]


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
