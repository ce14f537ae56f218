"""Engines and sessions, configured the twelve-factor way: one URL per database, from the
environment (``PLATFORM_DATABASE_URL``, ``TENANT_EU_DATABASE_URL``, ``TENANT_US_DATABASE_URL``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

PLATFORM = "platform"
TENANTS = ("tenant_eu", "tenant_us")
URL_VARIABLES = {
    PLATFORM: "PLATFORM_DATABASE_URL",
    "tenant_eu": "TENANT_EU_DATABASE_URL",
    "tenant_us": "TENANT_US_DATABASE_URL",
}

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


class NotConfigured(RuntimeError):
    """The environment does not say where a database is."""


def sqlalchemy_url(url: str) -> str:
    """``postgresql://…`` (what libpq and most platforms hand out) for the psycopg 3 driver."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url.removeprefix(scheme)
    return url


def database_url(database: str) -> str:
    try:
        variable = URL_VARIABLES[database]
    except KeyError:
        raise NotConfigured(f"unknown database {database!r}") from None
    url = os.environ.get(variable)
    if not url:
        raise NotConfigured(f"{variable} is not set; where is the {database} database?")
    return sqlalchemy_url(url)


def engine(database: str) -> Engine:
    """The process-wide engine of ``database`` (one per URL, created on first use)."""
    url = database_url(database)
    with _lock:
        found = _engines.get(url)
        if found is None:
            found = _engines[url] = create_engine(url, pool_size=3, max_overflow=2)
        return found


@contextmanager
def session(database: str) -> Iterator[Session]:
    """A unit of work on ``database``: committed when the block ends, rolled back on error."""
    with Session(engine(database), expire_on_commit=False) as unit, unit.begin():
        yield unit


def dispose_engines() -> None:
    """Close every pooled connection (at shutdown, or before forking)."""
    with _lock:
        for found in _engines.values():
            found.dispose()
        _engines.clear()
