"""shoal: any number of pytest invocations on the same PostgreSQL at once, each worker in
its own schema, nothing written anywhere shared.

PYTEST_DONT_REWRITE: ``shoal run`` imports shoal before it starts pytest in-process, and
pytest would warn that the plugin's package is already imported and cannot have its
asserts rewritten (an error under ``filterwarnings = ["error"]``). shoal's own code
needs no rewriting.
"""

from __future__ import annotations

import importlib

# Not typing's: importing typing costs a process that imports only a light submodule of
# shoal (shoal.idle, the first import of every background process) a third of its start.
# mypy treats any TYPE_CHECKING name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from shoal.binding import DatabaseHandle
    from shoal.config import DatabaseConfig, Settings, load_settings
    from shoal.errors import ShoalError, UsageError

__all__ = [
    "DatabaseConfig",
    "DatabaseHandle",
    "Settings",
    "ShoalError",
    "UsageError",
    "load_settings",
]

# Resolved on first use, so `import shoal.cli` (every `shoal` command) stays cheap.
_HOMES = {
    "DatabaseConfig": "shoal.config",
    "Settings": "shoal.config",
    "load_settings": "shoal.config",
    "ShoalError": "shoal.errors",
    "UsageError": "shoal.errors",
    "DatabaseHandle": "shoal.binding",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'shoal' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
