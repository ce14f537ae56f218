"""Every build checked: a setup creates what it should, where it should (DESIGN invariant 3).

A setup runs with the schema's binding, but its own code decides where it connects (an
Alembic env.py that builds an engine from a variable shoal was not told about, a
schema-qualified ``CREATE TABLE public.…``). So after each build shoal compares the
database's catalog outside shoal's own schemas with what it was before, and looks inside
the new schema: objects that appeared elsewhere, an extension created inside the schema
(it would vanish with the schema and be missing for every other worker), an empty schema,
or one that holds other relations than an earlier build of the same fingerprint, fail the
build, naming the objects. Nothing of the user's is dropped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import psycopg

from shoal import naming
from shoal.errors import SetupError

Conn = psycopg.Connection[tuple[Any, ...]]

# Schemas that are shoal's (worker, pool, renamed for dropping, extension homes) or the
# system's: what appears in them during a build is not the build's doing or is checked
# separately. A worker of another run renaming its schema for dropping while this one
# builds makes a to-drop schema appear, with everything in it.
_OWN = [
    naming.WORKER_SCHEMA_LIKE,
    naming.POOL_READY_LIKE,
    naming.POOL_BUILD_LIKE,
    naming.TO_DROP_LIKE,
    naming.EXTENSION_SCHEMA_LIKE,
    "pg\\_temp\\_%",
    "pg\\_toast\\_temp\\_%",
]
_SYSTEM = ["pg_catalog", "information_schema", "pg_toast"]
_OUTSIDE_SQL = """
WITH outside AS (
  SELECT oid, nspname FROM pg_namespace
  WHERE nspname <> ALL(%(system)s) AND NOT nspname LIKE ANY(%(own)s)
)
SELECT 'schema', nspname, '' FROM outside
UNION ALL
SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'S' THEN 'sequence' WHEN 'i' THEN 'index'
       ELSE 'table' END, o.nspname, c.relname
  FROM pg_class c JOIN outside o ON o.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'i')
UNION ALL
SELECT 'function', o.nspname, p.proname FROM pg_proc p JOIN outside o ON o.oid = p.pronamespace
UNION ALL
SELECT 'type', o.nspname, t.typname FROM pg_type t JOIN outside o ON o.oid = t.typnamespace
  WHERE t.typtype IN ('e', 'd', 'c') AND NOT EXISTS
    (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind <> 'c')
UNION ALL
SELECT 'extension', o.nspname, e.extname FROM pg_extension e
  JOIN outside o ON o.oid = e.extnamespace
"""
_INSIDE_SQL = """
SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
UNION ALL
SELECT p.proname, 'function' FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE n.nspname = %(schema)s
UNION ALL
SELECT t.typname, 'type' FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
  WHERE n.nspname = %(schema)s AND t.typtype IN ('e', 'd')
"""
_EXTENSIONS_IN_SQL = """
SELECT e.extname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
  WHERE n.nspname = %(schema)s ORDER BY 1
"""

Entry = tuple[str, str, str]  # (kind, schema, name)


def outside(conn: Conn) -> set[Entry]:
    """Every schema, relation, function, type and extension outside shoal's own schemas."""
    rows = conn.execute(_OUTSIDE_SQL, {"system": _SYSTEM, "own": _OWN}).fetchall()
    return {(str(kind), str(schema), str(name)) for kind, schema, name in rows}


@dataclass(frozen=True)
class Shape:
    """What a built schema holds: how many objects, and a digest of their names and kinds.

    Two builds of one fingerprint have the same shape; a build that differs (it ran
    against another database, or its migrations depend on state outside the schema)
    is refused rather than handed to a worker.
    """

    objects: int
    digest: str
    locks: int = 0  # lock_footprint of the build

    def as_json(self) -> dict[str, object]:
        return {"objects": self.objects, "digest": self.digest, "locks": self.locks}

    @classmethod
    def from_json(cls, data: object) -> Shape | None:
        if not isinstance(data, dict):
            return None
        objects, digest = data.get("objects"), data.get("digest")
        locks = data.get("locks")
        if isinstance(objects, int) and isinstance(digest, str):
            return cls(objects, digest, locks if isinstance(locks, int) else 0)
        return None


_FOOTPRINT_SQL = """
SELECT (SELECT count(*) FROM pg_class c WHERE c.relnamespace = n.oid)
     + (SELECT count(*) FROM pg_type t WHERE t.typnamespace = n.oid)
     + (SELECT count(*) FROM pg_constraint k WHERE k.connamespace = n.oid)
     + (SELECT count(*) FROM pg_proc p WHERE p.pronamespace = n.oid)
FROM pg_namespace n WHERE n.nspname = %(schema)s
"""


# Locks a DROP SCHEMA … CASCADE took per catalog object of the schema, measured on
# PostgreSQL 15: 69 for 35 objects (3 tables), 5,286 for 2,682 (220 tables).
LOCKS_PER_OBJECT = 2


def lock_footprint(conn: Conn, schema: str) -> int:
    """About how many locks building or dropping ``schema`` takes at once, from the
    objects in it (relations with their indexes and toast tables, types, constraints,
    functions): the drop, the larger of the two, takes two per object."""
    row = conn.execute(_FOOTPRINT_SQL, {"schema": schema}).fetchone()
    return LOCKS_PER_OBJECT * int(str(row[0])) if row else 0


def shape(conn: Conn, schema: str) -> Shape:
    rows = sorted((str(a), str(b)) for a, b in conn.execute(_INSIDE_SQL, {"schema": schema}))
    digest = hashlib.sha256("\n".join(f"{k} {n}" for n, k in rows).encode()).hexdigest()
    return Shape(objects=len(rows), digest=digest[:16], locks=lock_footprint(conn, schema))


def check(
    conn: Conn,
    *,
    schema: str,
    database: str,
    spec: str,
    before: set[Entry],
    expected: Shape | None = None,
) -> Shape:
    """Refuse a build that wrote outside ``schema``, hid an extension in it, built nothing,
    or built something else than ``expected``. Returns the schema's shape."""
    what = f"setup {spec!r} of database {database!r}"
    hidden = [str(r[0]) for r in conn.execute(_EXTENSIONS_IN_SQL, {"schema": schema})]
    if hidden:
        names = ", ".join(repr(name) for name in hidden)
        raise SetupError(
            f"{what} created the extension {names} inside schema {schema}: it would be "
            "dropped with that schema, and every other worker would miss it. Add it to "
            f"databases.{database}.extensions, so that shoal creates it once, in a schema "
            "of its own on every worker's search path"
        )
    appeared = sorted(outside(conn) - before)
    if appeared:
        named = ", ".join(_describe(entry) for entry in appeared[:10])
        more = f" and {len(appeared) - 10} more" if len(appeared) > 10 else ""
        raise SetupError(
            f"{what} created objects outside the schema it was building ({schema}): "
            f"{named}{more}. They were left where they are. Its own connections must use "
            "the URL shoal hands out or the variables it exports (PGOPTIONS, export_env): "
            "look for a connection string or a schema name written into the setup"
        )
    built = shape(conn, schema)
    if built.objects == 0:
        raise SetupError(
            f"{what} built nothing in schema {schema}: no table, view, sequence, function "
            "or type. If it connects on its own, it went to another database (e.g. one "
            "named by a variable that is not in export_env)"
        )
    if expected is not None and (expected.objects, expected.digest) != (
        built.objects,
        built.digest,
    ):
        raise SetupError(
            f"{what} built {built.objects} objects in schema {schema}, unlike an earlier "
            f"build of the same setup ({expected.objects} objects, another set of names): "
            "its result depends on something outside the schema"
        )
    return built


# Every user schema of a whole database (a template: all of it is the worker's, cloned).
_DATABASE_SQL = """
SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname <> ALL(%(system)s) AND NOT n.nspname LIKE 'pg\\_%%'
    AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
UNION ALL
SELECT n.nspname, p.proname, 'function' FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE n.nspname <> ALL(%(system)s) AND NOT n.nspname LIKE 'pg\\_%%'
UNION ALL
SELECT n.nspname, t.typname, 'type' FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
  WHERE n.nspname <> ALL(%(system)s) AND NOT n.nspname LIKE 'pg\\_%%' AND t.typtype IN ('e', 'd')
"""


def database_shape(conn: Conn) -> Shape:
    """What a whole database holds, in every schema but the system's (``conn``'s database)."""
    found = conn.execute(_DATABASE_SQL, {"system": _SYSTEM})
    rows = sorted((str(s), str(n), str(k)) for s, n, k in found)
    digest = hashlib.sha256("\n".join(f"{k} {s}.{n}" for s, n, k in rows).encode()).hexdigest()
    return Shape(objects=len(rows), digest=digest[:16])


def check_database(
    conn: Conn,
    *,
    template: str,
    elsewhere: Conn,
    elsewhere_name: str,
    database: str,
    spec: str,
    before: set[Entry],
) -> Shape:
    """Refuse a whole-database build (a template) that wrote into ``elsewhere`` (the
    server's control database, where a connection string without a database name
    lands), or built nothing in ``template`` (``conn``'s database), in any schema.

    The analogue of :func:`check` for a database that is all the worker's: every schema
    in it is cloned with it, so a schema other than ``public`` is the build's own, and an
    extension created in it is every clone's. What must not happen is a change in
    another database, or a build whose connections all went elsewhere."""
    what = f"setup {spec!r} of database {database!r}"
    appeared = sorted(outside(elsewhere) - before)
    if appeared:
        named = ", ".join(_describe(entry) for entry in appeared[:10])
        more = f" and {len(appeared) - 10} more" if len(appeared) > 10 else ""
        raise SetupError(
            f"{what} created objects in database {elsewhere_name}, not in the template "
            f"database {template} it was building: {named}{more}. They were left where they "
            "are. Its own connections must use the database shoal hands out: look for a "
            "connection string or a database name written into the setup"
        )
    built = database_shape(conn)
    if built.objects == 0:
        raise SetupError(
            f"{what} built nothing in the template database {template}: no table, view, "
            "sequence, function or type in any schema. If it connects on its own, it went "
            "to another database (e.g. one named by a variable that is not in export_env)"
        )
    return built


def _describe(entry: Entry) -> str:
    kind, schema, name = entry
    return f"schema {schema}" if kind == "schema" else f"{kind} {schema}.{name}"
