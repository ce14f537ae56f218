"""The worker binding: what every connection to one schema carries, and how it gets there.

A binding is a database's base URL plus a search path (the schema, then the tail) and a
label. It turns into the URL a worker hands out, the verified connection its fixtures
give, and the environment that puts unmodified libpq code into the same schema:
``PGOPTIONS``, ``PGAPPNAME`` and every ``export_env`` variable. Workers, ``shoal pool
warm`` and the background refill all bind the same way, so a setup's own connections
land in the schema being built wherever the setup runs (DESIGN invariant 3).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shoal import conninfo, naming
from shoal.errors import SchemaMissing

if TYPE_CHECKING:
    import psycopg
    from sqlalchemy.engine import Engine

DEFAULT_CONNECT_TIMEOUT_S = 5
# The server splits PGOPTIONS on unescaped whitespace; "\ " is part of a value.
_SEARCH_PATH_OPTION = re.compile(r"(?:-c\s*|--)search_path=(?:\\.|\S)*")


def pgoptions(existing: str | None, search_path: tuple[str, ...]) -> str:
    """PGOPTIONS with the search path replaced and every other option kept."""
    kept = _SEARCH_PATH_OPTION.sub("", existing or "").strip()
    ours = conninfo.search_path_option(search_path).replace(" ", "")
    return f"{kept} {ours}".strip()


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
    **kwargs: Any,
) -> psycopg.Connection[tuple[object, ...]]:
    """A labelled connection whose search path is the schema (then the tail, if any).

    PostgreSQL silently skips search-path entries that do not exist, so a missing schema
    would make every unqualified name fall through to the tail. Verify it first.
    """
    import psycopg

    conn = psycopg.connect(bound_url(url, search_path, label), connect_timeout=timeout, **kwargs)
    try:
        verify_search_path(conn, search_path[0])
    except BaseException:
        conn.close()
        raise
    return conn


def verify_search_path(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> None:
    row = conn.execute("SELECT current_schemas(false)").fetchone()
    if not conn.autocommit:
        conn.commit()
    schemas = list(row[0]) if row and isinstance(row[0], list) else []
    if not schemas or schemas[0] != schema:
        raise SchemaMissing(
            f"schema {schema!r} does not exist in database {conn.info.dbname!r} "
            f"(the search path resolves to {schemas}); refusing to hand out a connection that "
            "would write somewhere shared — no schema has been selected to create in"
        )


@dataclass(frozen=True)
class DatabaseHandle:
    """One database as bound to one schema (what the ``shoal_databases`` fixture maps).

    ``scheme`` is the configured URL's scheme: exported variables keep it, so that a
    ``postgresql+psycopg://`` URL stays one for SQLAlchemy.
    """

    name: str
    schema: str
    search_path: tuple[str, ...]
    label: str
    base_url: str = field(repr=False)
    export_env: tuple[str, ...] = ()
    scheme: str = "postgresql"

    @property
    def url(self) -> str:
        """libpq URL bound to the schema and labelled (password included)."""
        return bound_url(self.base_url, self.search_path, self.label)

    @property
    def exported_url(self) -> str:
        """:attr:`url` in the configured URL's scheme, for ``export_env`` variables."""
        return conninfo.with_scheme(self.url, self.scheme)

    @property
    def sqlalchemy_url(self) -> str:
        return conninfo.sqlalchemy_url(self.url)

    def connect(self, suffix: str | None = None, **kwargs: Any) -> psycopg.Connection[Any]:
        """A psycopg connection bound to the schema, labelled (``suffix`` appended)."""
        parsed = naming.parse_label(self.label)
        assert parsed is not None
        label = naming.connection_label(parsed.worker, parsed.namespace, suffix)
        return bound_connect(self.base_url, self.search_path, label, **kwargs)

    def create_engine(self, **kwargs: Any) -> Engine:
        """A SQLAlchemy engine (psycopg 3 driver) bound to the schema."""
        from sqlalchemy import create_engine

        return create_engine(self.sqlalchemy_url, **kwargs)

    def environment(self, current: Mapping[str, str]) -> dict[str, str]:
        """What to export so unmodified libpq clients land in this schema, labelled."""
        env = {"PGOPTIONS": pgoptions(current.get("PGOPTIONS"), self.search_path)}
        env["PGAPPNAME"] = self.label
        for variable in self.export_env:
            env[variable] = self.exported_url
        return env


def environment(
    handles: Mapping[str, DatabaseHandle], current: Mapping[str, str]
) -> dict[str, str]:
    """The environment of a worker bound to every one of ``handles`` (one schema name)."""
    env: dict[str, str] = {}
    for handle in handles.values():
        env.update(handle.environment(current))
    return env


@contextmanager
def applied(env: Mapping[str, str]) -> Iterator[None]:
    """``env`` in ``os.environ`` for the duration, then exactly what was there before."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
