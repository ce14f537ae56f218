"""Shared fixtures: the real PostgreSQL servers our tests run against.

Every integration test runs against the embedded server and, when
SHOAL_TEST_EXTERNAL_URL names one, against that second, independent server too.
Neither is assumed empty: other runs (other copies of this suite included) may be
using them at the same moment, so every name a test creates carries a random token.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql

from shoal import conninfo, naming
from shoal.config import load_settings
from shoal.embedded import EmbeddedServer

EXTERNAL_ENV = "SHOAL_TEST_EXTERNAL_URL"
# Projects our tests run as inner pytest sessions, not tests of ours.
collect_ignore = ["projects"]


@dataclass(frozen=True)
class Server:
    kind: str  # "embedded" | "external"
    admin_url: str  # a database we may connect to for administration

    def url(self, database: str) -> str:
        return conninfo.with_params(self.admin_url, dbname=database)

    def connect(self, database: str | None = None) -> psycopg.Connection[tuple[object, ...]]:
        url = self.url(database) if database else self.admin_url
        return psycopg.connect(url, autocommit=True, options="", application_name="shoal_tests")


def gone(comment: str) -> str:
    """An owner comment as a process that has exited would have left it: the start time
    is one no running process has, so the sweep cannot take the owner for alive."""
    data = json.loads(comment)
    data["started"] = 1.0
    return json.dumps(data, sort_keys=True)


def settled(server: Server, database: str, timeout: float = 60.0) -> list[str]:
    """The shoal worker schemas left in ``database`` once the runs' reapers are done:
    waits (up to ``timeout``) while schemas renamed for dropping are still there, and
    returns what is left, worker schemas and to-drop schemas alike."""
    deadline = time.monotonic() + timeout
    while True:
        with server.connect(database) as conn:
            rows = conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s OR nspname LIKE %s"
                " ORDER BY 1",
                (naming.WORKER_SCHEMA_LIKE, naming.TO_DROP_LIKE),
            ).fetchall()
        left = [str(r[0]) for r in rows]
        if not any(naming.parse_to_drop(name) for name in left):
            return left
        if time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def token() -> str:
    return secrets.token_hex(4)


@pytest.fixture(scope="session", params=["embedded", "external"])
def server(request: pytest.FixtureRequest) -> Server:
    if request.param == "external":
        url = os.environ.get(EXTERNAL_ENV)
        if not url:
            pytest.skip(f"{EXTERNAL_ENV} is not set")
        return Server("external", url)
    return Server("embedded", embedded_server().ensure_running())


def embedded_server() -> EmbeddedServer:
    """The embedded server inner runs use too (SHOAL_HOME respected)."""
    return EmbeddedServer(load_settings().home)


@pytest.fixture(scope="session")
def embedded() -> Server:
    return Server("embedded", embedded_server().ensure_running())


class Databases:
    """Fresh databases on one server, dropped again when the session ends."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.created: list[str] = []

    def new(self, label: str = "db") -> str:
        name = f"shoalt_{token()}_{label}"
        with self.server.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        return name

    def drop_all(self) -> None:
        with self.server.connect() as conn:
            for name in self.created:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


@pytest.fixture(scope="session")
def databases(server: Server) -> Iterator[Databases]:
    made = Databases(server)
    yield made
    made.drop_all()


@pytest.fixture(scope="session")
def embedded_databases(embedded: Server) -> Iterator[Databases]:
    made = Databases(embedded)
    yield made
    made.drop_all()


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@pytest.fixture
def saturated() -> Iterator[None]:
    """Every core busy (one spinner more than there are cores), for a few seconds."""
    spinners = [
        multiprocessing.get_context("spawn").Process(target=_spin, args=(10,))
        for _ in range((os.cpu_count() or 1) + 1)
    ]
    for spinner in spinners:
        spinner.start()
    time.sleep(0.5)  # the spinners' interpreters are up
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.terminate()
            spinner.join()
