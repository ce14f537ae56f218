"""Fixtures shared by the suite.

shoal gives every xdist worker its own schema in each database, so tests on different
workers (or in other pytest runs) never see each other's rows. Tests on the *same*
worker share that schema, one after the other: each test leaves it empty again.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from multitenant_app import db, services
from multitenant_app.models import PLATFORM_DATA_TABLES, TENANT_DATA_TABLES
from psycopg import sql
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from shoal import DatabaseHandle

DATABASES = ("platform", "tenant_eu", "tenant_us")
DATA_TABLES = {
    "platform": PLATFORM_DATA_TABLES,
    "tenant_eu": TENANT_DATA_TABLES,
    "tenant_us": TENANT_DATA_TABLES,
}


@pytest.fixture(scope="session")
def _cleaners(
    shoal_databases: dict[str, DatabaseHandle],
) -> Iterator[dict[str, psycopg.Connection[Any]]]:
    conns = {name: shoal_databases[name].connect("cleanup", autocommit=True) for name in DATABASES}
    for conn in conns.values():
        # Fail loudly rather than hang behind a connection a test left in a transaction.
        conn.execute("SET lock_timeout = '5s'")
    yield conns
    for conn in conns.values():
        conn.close()


@pytest.fixture(autouse=True)
def _empty_tables_after_test(_cleaners: dict[str, psycopg.Connection[Any]]) -> Iterator[None]:
    yield
    # DELETE rather than TRUNCATE: on a handful of rows it is several times cheaper, and
    # no test relies on identity values starting anywhere in particular.
    for name, conn in _cleaners.items():
        with conn.transaction():
            for table in DATA_TABLES[name]:  # children first
                conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))


@pytest.fixture(scope="session", autouse=True)
def _app_engines(shoal_schema: str) -> Iterator[None]:
    """Dispose of the app's pooled connections before shoal drops the worker schemas."""
    yield
    db.dispose_engines()


@pytest.fixture(scope="session")
def engines(shoal_databases: dict[str, DatabaseHandle]) -> Iterator[dict[str, Engine]]:
    """SQLAlchemy engines built by shoal, one per database, bound to the worker schema."""
    built = {name: handle.create_engine(pool_size=2) for name, handle in shoal_databases.items()}
    yield built
    for engine in built.values():
        engine.dispose()


@pytest.fixture
def platform(engines: dict[str, Engine]) -> Iterator[Session]:
    """A platform session in one transaction, rolled back at the end of the test."""
    with Session(engines["platform"]) as session:
        yield session
        session.rollback()


@pytest.fixture
def unique() -> str:
    """A short token for names that must not collide (slugs, emails, keys)."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def worker() -> str:
    """This process's worker id as shoal names it: ``gwN`` under xdist, else ``main``."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture
def signup() -> Callable[..., services.SignUp]:
    """Sign an organisation up through the app itself (its own engine, from the environment)."""

    def sign_up(region: str = "eu", name: str | None = None) -> services.SignUp:
        token = uuid.uuid4().hex[:8]
        with db.session("platform") as session:
            return services.sign_up(
                session,
                name=name or f"Org {token}",
                region=region,
                owner_email=f"owner-{token}@example.com",
                owner_name="Olive Owner",
            )

    return sign_up
