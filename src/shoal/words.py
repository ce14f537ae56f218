"""Plain words for messages: counts with the right noun form, validation errors that say
what is expected, near misses named."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any


def plural(count: int, noun: str) -> str:
    """``1 schema``, ``2 schemas``, ``0 schemas``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean `pool_size`?)`` for a near miss, else nothing."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f" (did you mean `{close[0]}`?)" if close else ""


# What a value of each kind looks like, for messages.
_EXAMPLES = {
    "int": "a whole number, e.g. 5",
    "float": "a number, e.g. 7",
    "bool": "true or false",
    "str": "a string",
    "tuple": 'a list of strings, e.g. ["public"] (or one string)',
    "list": 'a list of strings, e.g. ["public"] (or one string)',
    "dict": "a table, e.g. [tool.shoal.databases.app]",
}


def validation_message(error: Mapping[str, Any], known: Iterable[str]) -> str:
    """One of pydantic's validation errors (a dict from ``ValidationError.errors()``) in
    plain words: what is expected, with an example; a near miss for an unknown key."""
    kind = str(error.get("type", ""))
    context = error.get("ctx") or {}
    if kind == "extra_forbidden":
        name = str(error["loc"][-1]) if error.get("loc") else ""
        return f"not a setting shoal knows{did_you_mean(name, known)}"
    for prefix, example in _EXAMPLES.items():
        if kind.startswith(f"{prefix}_"):
            return f"expected {example}"
    bounds = {
        "greater_than_equal": "at least {ge}",
        "greater_than": "more than {gt}",
        "less_than_equal": "at most {le}",
        "less_than": "less than {lt}",
    }
    if kind in bounds:
        return "expected " + bounds[kind].format(**context)
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")
