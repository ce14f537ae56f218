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


# The pytest plugins a benchmark's suite runs with; every other one installed beside them
# (shoal's own test dependencies: hypothesis, schemathesis, pytest-django, anyio) is
# turned off, or its start-up and its work at the session's end would be measured as
# shoal's: schemathesis imports its reporting modules in every worker as the session ends.
SUITE_PLUGINS = ("pytest-xdist", "shoal")


def other_plugins() -> list[str]:
    """``-p no:<name>`` for every installed pytest plugin not of :data:`SUITE_PLUGINS`."""
    from importlib.metadata import entry_points

    names = sorted(
        {
            ep.name
            for ep in entry_points(group="pytest11")
            if ep.dist and ep.dist.name not in SUITE_PLUGINS
        }
    )
    return [arg for name in names for arg in ("-p", f"no:{name}")]
