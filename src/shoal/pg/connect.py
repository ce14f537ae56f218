"""Connections: shoal's own (labelled, untouched by the worker environment) and bound ones."""

from __future__ import annotations

import psycopg
from psycopg import sql

from shoal import conninfo
from shoal.errors import SchemaMissing, ServerUnreachable

DEFAULT_CONNECT_TIMEOUT_S = 5


def admin_connect(
    url: str, label: str, *, timeout: int = DEFAULT_CONNECT_TIMEOUT_S, autocommit: bool = True
) -> psycopg.Connection[tuple[object, ...]]:
    """A connection for shoal's own work.

    ``options`` and ``application_name`` are always given explicitly: libpq falls back to
    PGOPTIONS and PGAPPNAME only for parameters left unset, and a worker exports both
    for the suite's own connections.
    """
    try:
        return psycopg.connect(
            url, application_name=label, options="", connect_timeout=timeout, autocommit=autocommit
        )
    except psycopg.OperationalError as exc:
        reason = conninfo.mask(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
        raise ServerUnreachable(
            f"cannot connect to {conninfo.mask(url)} within {timeout}s: {reason}"
        ) from None


def bound_url(url: str, search_path: tuple[str, ...], label: str) -> str:
    """The URL a worker hands out: search path pinned to its schema, connection labelled."""
    return conninfo.with_params(
        url, options=conninfo.search_path_option(search_path), application_name=label
    )


def bound_connect(
    url: str,
    search_path: tuple[str, ...],
    label: str,
    *,
    timeout: int = DEFAULT_CONNECT_TIMEOUT_S,
    **kwargs: object,
) -> psycopg.Connection[tuple[object, ...]]:
    """A labelled connection whose search path is the worker schema (then the tail, if any).

    PostgreSQL silently skips search-path entries that do not exist, so a missing worker
    schema would make every unqualified name fall through to the tail. Verify it first.
    """
    conn = psycopg.connect(
        bound_url(url, search_path, label),
        connect_timeout=timeout,
        **kwargs,  # type: ignore[arg-type]
    )
    try:
        verify_search_path(conn, search_path[0])
    except BaseException:
        conn.close()
        raise
    return conn


def verify_search_path(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> None:
    row = conn.execute("SELECT current_schemas(false)").fetchone()
    conn.commit() if not conn.autocommit else None
    schemas = list(row[0]) if row else []  # type: ignore[call-overload]
    if not schemas or schemas[0] != schema:
        raise SchemaMissing(
            f"schema {schema!r} does not exist in database {conn.info.dbname!r} "
            f"(the search path resolves to {schemas}); refusing to hand out a connection that "
            "would write somewhere shared — no schema has been selected to create in"
        )


def quoted(name: str) -> sql.Identifier:
    return sql.Identifier(name)
