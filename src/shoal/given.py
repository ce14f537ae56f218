"""What a project gave shoal, read without the settings' models.

Finding the project file, reading its ``[tool.shoal]`` table and telling shoal's own
``SHOAL_*`` variables from settings need no validation, so they live here, apart from
:mod:`shoal.config`, whose models (pydantic, about 0.1 s to import and build) are loaded
only when something was given. Most runs of a project that has shoal installed give it
nothing, and their plan is the defaults' (:meth:`shoal.plan.RunPlan.unconfigured`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shoal.errors import ConfigError, UsageError

# SHOAL_* variables that are not settings: what shoal passes between its own processes,
# `shoal serve`'s settings, options read where they are used. A name ending in "_" is a
# prefix; SHOAL_NAMESPACE is one variable (SHOAL_NAMESPACE_FORCE is a setting).
NOT_SETTINGS = (
    "SHOAL_NAMESPACE",
    "SHOAL_RUNNER",
    "SHOAL_PLAN",
    "SHOAL_REFILL_LOG",
    "SHOAL_SERVE_",
    "SHOAL_SHARD",
    "SHOAL_TEST_",
)


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml at or above ``start``."""
    for directory in (start, *start.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def find_project_file(inipath: Path | None, start: Path) -> Path | None:
    """The pyproject.toml whose ``[tool.shoal]`` applies, for pytest and the CLI alike:
    pytest's ini file when it is one, else the nearest at or above ``start``."""
    if inipath is not None and inipath.name == "pyproject.toml":
        return inipath
    return find_pyproject(start)


def read_table(path: Path) -> dict[str, Any]:
    """The ``[tool.shoal]`` table of ``path`` (empty when it has none)."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        problem = UsageError("[tool.shoal]", str(path), str(path), f"unreadable: {exc}")
        raise ConfigError([problem]) from None
    table = document.get("tool", {}).get("shoal", {})
    if not isinstance(table, dict):
        raise ConfigError([UsageError("tool.shoal", table, str(path), "expected a table")])
    return table


def is_own_variable(name: str) -> bool:
    """One of the SHOAL_* variables of :data:`NOT_SETTINGS`."""
    return any(name == own or (own.endswith("_") and name.startswith(own)) for own in NOT_SETTINGS)


def nothing_given(
    *,
    flags: Mapping[str, Any],
    ini: Mapping[str, Any],
    pyproject: Path | None,
    environ: Mapping[str, str],
) -> bool:
    """True when no layer gives shoal a setting: no flag, no ini key, an empty (or no)
    ``[tool.shoal]``, no SHOAL_* variable but shoal's own. A bad project file is not
    nothing: loading the settings then says what is wrong with it."""
    if any(v is not None for v in flags.values()) or any(v for v in ini.values()):
        return False
    if any(k.startswith("SHOAL_") and not is_own_variable(k) for k in environ):
        return False
    try:
        return pyproject is None or not read_table(pyproject)
    except ConfigError:
        return False
