"""shoal: any number of pytest invocations on the same PostgreSQL at once, each worker in
its own schema, nothing written anywhere shared.

PYTEST_DONT_REWRITE: ``shoal run`` imports shoal before it starts pytest in-process, and
pytest would warn that the plugin's package is already imported and cannot have its
asserts rewritten (an error under ``filterwarnings = ["error"]``). shoal's own code
needs no rewriting.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
