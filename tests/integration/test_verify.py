"""Every build is checked: nothing outside its schema, no hidden extension, not empty."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from shoal import naming, setups
from shoal.errors import SetupError
from shoal.namespace import fresh
from shoal.pg import pool, schemas, verify
from shoal.pg.worker import WorkerSchemas
from shoal.plan import Target
from shoal.setups import Setup
from tests.conftest import Databases, Server


def sql_target(server: Server, database: str, tmp_path: Path, text: str) -> Target:
    path = tmp_path / f"schema_{time.monotonic_ns()}.sql"
    path.write_text(text)
    setup = Setup(setups.kind_named("sql"), f"sql:{path.name}", path)
    return Target(name="app", url=server.url(database), control_url=server.admin_url, setup=setup)


def build(target: Target, *, pool_on: bool = False) -> WorkerSchemas:
    worker = WorkerSchemas([target], fresh().token, "gw0", ddl_slots=2, pool=pool_on)
    worker.check()
    return worker


def worker_schemas_in(server: Server, database: str, namespace: str) -> list[str]:
    with server.connect(database) as conn:
        listed = schemas.list_schemas(conn)
    return [n for n, _ in listed if (p := naming.parse_schema(n)) and p.namespace == namespace]


def test_a_setup_that_writes_into_public_fails_naming_what_it_wrote(
    server: Server, databases: Databases, tmp_path: Path
) -> None:
    database = databases.new("leak")
    text = "CREATE TABLE items (id int);\nCREATE TABLE public.leaked (id int);\n"
    worker = build(sql_target(server, database, tmp_path, text))
    with pytest.raises(SetupError) as failed:
        worker.provision()
    message = str(failed.value)
    assert "outside the schema it was building" in message
    # Exactly what went elsewhere is named; the table built where it belongs is not.
    named = message.split("): ", 1)[1].split(". They were left", 1)[0]
    assert named == "table public.leaked"
    # Nothing half-built is kept; the user's object is left where it went.
    assert worker_schemas_in(server, database, worker.namespace) == []
    with server.connect(database) as conn:
        assert conn.execute("SELECT to_regclass('public.leaked')::text").fetchone() == ("leaked",)


def test_a_setup_that_builds_nothing_is_refused(
    server: Server, databases: Databases, tmp_path: Path
) -> None:
    database = databases.new("empty")
    worker = build(sql_target(server, database, tmp_path, "SELECT 1;\n"))
    with pytest.raises(SetupError, match="built nothing in schema"):
        worker.provision()
    assert worker_schemas_in(server, database, worker.namespace) == []


def test_an_extension_created_inside_the_schema_says_to_configure_it(
    server: Server, databases: Databases, tmp_path: Path
) -> None:
    database = databases.new("ext")
    text = "CREATE EXTENSION IF NOT EXISTS citext;\nCREATE TABLE users (email citext);\n"
    worker = build(sql_target(server, database, tmp_path, text))
    with pytest.raises(SetupError) as failed:
        worker.provision()
    assert "the extension 'citext' inside schema" in str(failed.value)
    assert "databases.app.extensions" in str(failed.value)
    # Configured, the same migration builds: its IF NOT EXISTS finds the extension.
    configured = build(
        Target(
            **{**sql_target(server, database, tmp_path, text).__dict__, "extensions": ("citext",)}
        )
    )
    try:
        configured.provision()
    finally:
        configured.teardown(keep=False)


def test_a_pool_build_records_its_shape_and_a_different_one_is_refused(
    server: Server, databases: Databases, tmp_path: Path
) -> None:
    database = databases.new("shape")
    target = sql_target(server, database, tmp_path, "CREATE TABLE a (id int);\n")
    fingerprint = setups.fingerprint(target.setup)
    assert fingerprint is not None
    result = pool.warm(
        target,
        fingerprint,
        1,
        namespace=fresh().token,
        tail=(),
        ddl_slots=2,
        timeout=5,
        deadline=time.monotonic() + 60,
    )
    assert len(result.built) == 1
    with server.connect(database) as conn:
        recorded = pool.recorded_shape(conn, fingerprint)
        assert recorded is not None
        assert recorded.objects == 1
        assert verify.shape(conn, result.built[0]) == recorded
        before = verify.outside(conn)
        other = naming.schema_name(fresh().token, "gw0")
        schemas.create_schema(conn, other, "{}")
        conn.execute(f"CREATE TABLE {other}.b (id int)")
        with pytest.raises(SetupError, match="unlike an earlier build of the same setup"):
            verify.check(
                conn, schema=other, database="app", spec="sql:x", before=before, expected=recorded
            )
        schemas.drop_schema(conn, other)
