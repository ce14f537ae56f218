"""shoal.idle: a background process waits for a free core, and never forever."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from shoal.idle import IDLE_CORES, idle_cores, wait_for_idle_core


class Scripted:
    """Idle cores per window, as given; each window takes its time, like the real one."""

    def __init__(self, *idle: float) -> None:
        self.idle = list(idle)
        self.windows = 0

    def __call__(self, window_s: float) -> float:
        time.sleep(window_s)
        self.windows += 1
        return self.idle.pop(0) if self.idle else 0.0


def test_the_work_starts_after_the_first_window_with_a_free_core() -> None:
    measure = Scripted(0.2, 0.9, IDLE_CORES, 0.0)
    waited = wait_for_idle_core(max_wait_s=5, window_s=0.01, measure=measure)
    assert measure.windows == 3
    assert waited < 1


def test_a_machine_that_is_never_idle_delays_the_work_only_so_long() -> None:
    measure = Scripted()  # never a free core
    waited = wait_for_idle_core(max_wait_s=0.3, window_s=0.05, measure=measure)
    assert 0.3 <= waited < 1.0
    assert measure.windows >= 5


@pytest.mark.usefixtures("saturated")
def test_a_saturated_machine_has_no_free_core() -> None:
    assert idle_cores(0.5) < IDLE_CORES
    started = time.monotonic()
    waited = wait_for_idle_core(max_wait_s=1.0, window_s=0.25)
    assert waited >= 1.0
    assert time.monotonic() - started < 3


def test_the_first_import_of_a_background_process_stays_light() -> None:
    code = "import sys, shoal.idle; print(sorted({'typing', 'psutil'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
