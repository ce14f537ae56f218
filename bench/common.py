"""What the benchmarks share: the machine line they print, the environment of their children."""

from __future__ import annotations

import os
from collections.abc import Mapping


def machine() -> str:
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    return f"{os.cpu_count()} cores, load average {load}"


def bytecode_env(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without PYTHONDONTWRITEBYTECODE.

    With it nothing is cached, not even by a warm-up run: every process compiles an
    editable checkout's modules from source, and pytest rewrites the asserts of every
    plugin module it loads (shoal's included) again, which a user's machine does once.
    Measured on a machine whose environment set it: loading shoal's plugin put +0.08 to
    +0.22 s on pytest's start (medians of 15-20 runs at -n 2), and nothing (-0.00 s) once
    the bytecode was written.
    """
    return {k: v for k, v in environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
