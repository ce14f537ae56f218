"""Small text helpers shared by the commands' human output."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shoal.targets import Existing


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
