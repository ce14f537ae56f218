"""Django's test databases: created once, race-free, never dropped by a run.

Every invocation and every host may find the database missing at the same moment; the
creation is serialised by an advisory lock in the server's control database, and a
``duplicate_database`` from a creator that took no lock (Django itself, an older shoal)
counts as success.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from shoal import conninfo, naming
from shoal.errors import ShoalError, first_line
from shoal.pg.connect import admin_connect


class TestDatabaseError(ShoalError):
    """Django's test database could not be created."""


def ensure(
    url: str,
    control_url: str,
    *,
    timeout: int,
    template: str | None = None,
    encoding: str | None = None,
) -> bool:
    """Create the database ``url`` names unless it exists; True when this call created it."""
    name = conninfo.dbname(url)
    with admin_connect(control_url, naming.tool_label("admin"), timeout=timeout) as conn:
        if _exists(conn, name):
            return False
        key = naming.database_lock()
        conn.execute("SELECT pg_advisory_lock(%s, %s)", key)
        try:
            if _exists(conn, name):
                return False
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template:
                statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            if encoding:
                statement += sql.SQL(" ENCODING {}").format(sql.Literal(encoding))
            try:
                conn.execute(statement)
            except psycopg.errors.DuplicateDatabase:
                return False
            except psycopg.Error as exc:
                raise TestDatabaseError(
                    f"cannot create Django's test database {name!r} on "
                    f"{conninfo.mask(control_url)}: {first_line(exc)} (the role needs CREATEDB, "
                    "or create the database once by hand: shoal never drops it)"
                ) from None
            return True
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", key)


def _exists(conn: psycopg.Connection[tuple[object, ...]], name: str) -> bool:
    row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None
