"""Plain words for messages: counts with the right noun form."""

from __future__ import annotations


def plural(count: int, noun: str) -> str:
    """``1 schema``, ``2 schemas``, ``0 schemas``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
