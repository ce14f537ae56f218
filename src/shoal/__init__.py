"""shoal: any number of pytest invocations on the same PostgreSQL at once, each worker in
its own schema, nothing written anywhere shared."""

from __future__ import annotations

from shoal.config import DatabaseConfig, Settings, load_settings
from shoal.errors import ShoalError, UsageError
from shoal.pg.worker import DatabaseHandle

__all__ = [
    "DatabaseConfig",
    "DatabaseHandle",
    "Settings",
    "ShoalError",
    "UsageError",
    "load_settings",
]
