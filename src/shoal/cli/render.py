"""Small text helpers shared by the commands' human output."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from shoal.targets import Existing


# Wide enough for any line a command prints; rich's tables do not stretch to fill it.
UNLIMITED_WIDTH = 10_000


def duration(seconds: float | None) -> str:
    """``3.2 s``, ``42 s``, ``5 min 3 s``, ``2 h 5 min``, ``3 d 4 h``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60} min"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


def absent_note(existing: Existing) -> str | None:
    """One line on the databases a looking command left out, or None."""
    if not existing.absent:
        return None
    names = ", ".join(existing.absent)
    why = (
        "not created on the embedded server yet"
        if existing.embedded_running
        else "on the embedded server, which is not running (`shoal db up` starts it)"
    )
    return f"not looked at: {names}, {why}; no run can be using them"


def console(*, stderr: bool = False) -> Console:
    """A console for a command's human output.

    Not a terminal (a CI log, a pipe): no width limit, so node ids, run names and table
    headers stay whole instead of being wrapped at rich's default of 80 columns.
    """
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else UNLIMITED_WIDTH
    return Console(stderr=stderr, highlight=False, width=width)
