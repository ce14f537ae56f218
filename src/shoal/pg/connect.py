"""shoal's own connections: labelled, untouched by the worker environment.

Connections bound to a schema are :mod:`shoal.binding`'s."""

from __future__ import annotations

import psycopg

from shoal import conninfo
from shoal.errors import ServerUnreachable, first_line

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
        raise ServerUnreachable(
            f"cannot connect to {conninfo.mask(url)} within {timeout}s: {first_line(exc)}"
        ) from None
