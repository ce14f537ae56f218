"""Worker schemas in one database: create with owner metadata, guard the tail, drop.

Each function takes an autocommit admin connection to the database concerned and
runs its statements in a transaction of its own.
"""

from __future__ import annotations

import functools
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from shoal import naming
from shoal.errors import ExtensionUnavailable, UnsafeSearchPath, first_line

Conn = psycopg.Connection[tuple[Any, ...]]

# DESIGN invariant 6: one drop per transaction, bounded in time.
DROP_LOCK_TIMEOUT = "5s"
DROP_STATEMENT_TIMEOUT = "30s"
# relkinds a test could read or write through an unqualified name.
_DATA_RELKINDS = ("r", "p", "v", "m", "S", "f")

# The statements this module sends, by name.
SCHEMAS_LIKE = """
SELECT nspname, obj_description(oid, 'pg_namespace') FROM pg_namespace
WHERE nspname LIKE %s ORDER BY nspname
"""
SCHEMA_EXISTS = "SELECT 1 FROM pg_namespace WHERE nspname = %s"
TABLES_IN_SCHEMA = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY c.oid LIMIT %s
"""
XACT_LOCK = "SELECT pg_advisory_xact_lock(%s, %s)"
EXTENSION_HOME = """
SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = %s
"""
EXTENSION_HOMES = """
SELECT DISTINCT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = ANY(%s) ORDER BY 1
"""
# Relations a test could read or write in the tail, leaving out those of extensions.
DATA_IN_SCHEMAS = """
SELECT n.nspname, c.relname, c.relkind FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY(%s) AND c.relkind = ANY(%s)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""


def owner_comment(
    namespace: str, worker: str, now: datetime | None = None, *, pooled: str | None = None
) -> str:
    """The owner metadata stored on a worker schema (read back by ``shoal ps`` and the sweep).

    ``pooled``: the pool schema a claimed schema was, so a human can tell it was not
    built by its worker.
    """
    data: dict[str, object] = {
        "shoal": 1,
        "namespace": namespace,
        "worker": worker,
        **process_identity(),
        "created": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
    }
    if pooled is not None:
        data["pooled"] = pooled
    return json.dumps(data, sort_keys=True)


def process_identity() -> dict[str, object]:
    """Host, pid and process start time: enough for a sweep on the same host to tell
    whether the process that made a schema is still alive (a pid alone can be reused)."""
    return dict(_identity(os.getpid()))


@functools.cache
def _identity(pid: int) -> tuple[tuple[str, object], ...]:
    # Kept per pid (a fork is another process): the first call imports psutil and reads
    # /proc, some milliseconds a claim would otherwise spend on its clock.
    import psutil

    return (
        ("host", socket.gethostname()),
        ("pid", pid),
        ("started", round(psutil.Process(pid).create_time(), 2)),
    )


def parse_owner_comment(comment: str | None) -> dict[str, Any] | None:
    try:
        data = json.loads(comment or "")
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("shoal") == 1 else None


def created_at(owner: dict[str, Any] | None) -> datetime | None:
    """When an owner comment says its schema was made; None when it does not say so in
    a time with a zone (a naive time cannot be compared with an aware clock, and shoal
    always writes UTC: anything else was not written by shoal)."""
    if owner is None:
        return None
    try:
        created = datetime.fromisoformat(str(owner.get("created")))
    except ValueError:
        return None
    return created if created.tzinfo is not None else None


def create_schema(conn: Conn, schema: str, comment: str) -> None:
    """Create ``schema`` afresh (a leftover of the same name from a crashed worker of this
    run is dropped first) and record its owner, in one transaction."""
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(DROP_LOCK_TIMEOUT)))
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
                sql.Identifier(schema), sql.Literal(comment)
            )
        )


def drop_schema(conn: Conn, schema: str) -> None:
    """``DROP SCHEMA … CASCADE`` in its own short transaction with lock and statement timeouts."""
    with conn.transaction():
        _bounded(conn)
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


# A DROP SCHEMA … CASCADE takes a lock on every object in it at once. Measured: a table
# with its toast table, indexes, sequence, constraints and types costs 22-27 lock entries,
# so past this many tables they go first in batches of about 1,300 locks, each batch its
# own transaction.
DROP_CHUNK = 50


def drop_schema_chunked(conn: Conn, schema: str, chunk: int = DROP_CHUNK) -> None:
    """Drop a possibly very large schema, holding at most ~DROP_CHUNK tables' locks at once."""
    while True:
        rows = conn.execute(TABLES_IN_SCHEMA, (schema, chunk + 1)).fetchall()
        if len(rows) <= chunk:
            break
        tables = sql.SQL(", ").join(sql.Identifier(schema, r[0]) for r in rows[:chunk])
        with conn.transaction():
            _bounded(conn)
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(tables))
    drop_schema(conn, schema)


def rename_for_drop(conn: Conn, schema: str, to_drop: str) -> None:
    """Rename ``schema`` to its to-drop name in one short transaction; the owner comment
    goes with it. A rename updates one catalog row: milliseconds, where the drop of a
    large schema takes seconds and thousands of locks."""
    with conn.transaction():
        _bounded(conn)
        conn.execute(
            sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                sql.Identifier(schema), sql.Identifier(to_drop)
            )
        )


TRY_SESSION_LOCK = "SELECT pg_try_advisory_lock(%s, %s)"
SESSION_UNLOCK = "SELECT pg_advisory_unlock(%s, %s)"


@contextmanager
def claimed_for_drop(conn: Conn, schema: str) -> Iterator[bool]:
    """Hold the to-drop lock of ``schema`` on ``conn``; yields False when another reaper or
    sweep holds it (it is dropping the schema) or the schema is gone already.

    A drop of a large schema is several transactions (:func:`drop_schema_chunked`), so
    the lock is a session lock, tried, never waited for: two droppers never queue on the
    same schema's locks.
    """
    key = naming.to_drop_lock(schema)
    row = conn.execute(TRY_SESSION_LOCK, key).fetchone()
    if not (row and row[0]):
        yield False
        return
    try:
        yield schema_exists(conn, schema)
    finally:
        # A connection lost meanwhile lost its lock with it.
        if not conn.closed and not conn.broken:
            with suppress(psycopg.Error):
                conn.execute(SESSION_UNLOCK, key)


def _bounded(conn: Conn) -> None:
    conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(DROP_LOCK_TIMEOUT)))
    conn.execute(
        sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(DROP_STATEMENT_TIMEOUT))
    )


def list_schemas(conn: Conn, like: str = naming.WORKER_SCHEMA_LIKE) -> list[tuple[str, str | None]]:
    """(name, owner comment) of every schema whose name matches ``like``."""
    rows = conn.execute(SCHEMAS_LIKE, (like,)).fetchall()
    return [(str(r[0]), r[1]) for r in rows]


def schema_exists(conn: Conn, schema: str) -> bool:
    row = conn.execute(SCHEMA_EXISTS, (schema,)).fetchone()
    return row is not None


def ensure_extensions(conn: Conn, extensions: tuple[str, ...]) -> tuple[str, ...]:
    """Create missing extensions once per database; return the schemas they live in.

    CREATE EXTENSION IF NOT EXISTS still races (unique violation) when two runs try at
    once, so it is serialised with an advisory lock. A new extension goes into its own
    schema ``shoal_ext_<name>``, never into a worker schema that a later drop would take
    with it, and never into a schema that holds tables.
    """
    if not extensions:
        return ()
    with conn.transaction():
        conn.execute(XACT_LOCK, naming.extension_lock())
        for extension in extensions:
            row = conn.execute(EXTENSION_HOME, (extension,)).fetchone()
            if row is None:
                home = naming.extension_schema(extension)
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(home)))
                try:
                    with conn.transaction():
                        conn.execute(
                            sql.SQL("CREATE EXTENSION {} SCHEMA {}").format(
                                sql.Identifier(extension), sql.Identifier(home)
                            )
                        )
                except psycopg.Error as exc:
                    raise ExtensionUnavailable("", extension, first_line(exc)) from None
        rows = conn.execute(EXTENSION_HOMES, (list(extensions),)).fetchall()
    return tuple(str(r[0]) for r in rows)


def check_databases(
    databases: list[tuple[str, str, tuple[str, ...]]],
    configured_tail: tuple[str, ...],
    timeout: int,
) -> tuple[str, ...]:
    """Create the configured extensions and verify the search-path tail; create nothing else.

    ``databases``: (name, URL, extensions). Returns the tail every worker's search path
    ends with: the configured schemas, then wherever the extensions live. It goes into
    every libpq connection through PGOPTIONS, so it is checked in every database.
    """
    from shoal.pg.connect import admin_connect

    homes: list[str] = []
    connections: list[tuple[str, Conn]] = []
    try:
        for name, url, extensions in databases:
            conn = admin_connect(url, naming.tool_label("admin"), timeout=timeout)
            connections.append((name, conn))
            try:
                homes += ensure_extensions(conn, extensions)
            except ExtensionUnavailable as exc:
                raise ExtensionUnavailable(name, exc.extension, exc.reason) from None
        tail = tuple(dict.fromkeys([*configured_tail, *homes]))
        for name, conn in connections:
            check_tail(conn, tail, name)
    finally:
        for _, conn in connections:
            conn.close()
    return tail


def check_tail(conn: Conn, tail: tuple[str, ...], database: str) -> None:
    """Refuse a search-path tail that holds tables, views or sequences."""
    if not tail:
        return
    rows = conn.execute(DATA_IN_SCHEMAS, (list(tail), list(_DATA_RELKINDS))).fetchall()
    if not rows:
        return
    by_schema: dict[str, list[str]] = {}
    for schema, relname, _kind in rows:
        by_schema.setdefault(schema, []).append(relname)
    found = "; ".join(
        f"{schema}: {', '.join(names[:8])}{' …' if len(names) > 8 else ''} ({len(names)} objects)"
        for schema, names in by_schema.items()
    )
    raise UnsafeSearchPath(
        f"database {database!r}: the search-path tail {list(tail)} holds tables, views or "
        f"sequences ({found}). Tests would read and write them whenever a name is missing "
        "from the worker schema. Use a dedicated test database, or move the extensions to "
        "a schema of their own and put only that schema in search_path_tail."
    )
