"""The isolation engine against real servers: fail-closed binding, cleanup, slots, races."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest

from shoal import naming, setups
from shoal.errors import SchemaMissing, SetupError
from shoal.namespace import fresh
from shoal.pg import schemas
from shoal.pg.connect import admin_connect
from shoal.pg.slots import Lease
from shoal.pg.worker import WorkerSchemas
from shoal.plan import Target
from shoal.setups import Setup
from tests.conftest import Databases, Server


def make_setup(kind: str, spec: str, target: object) -> Setup:
    return Setup(setups.kind_named(kind), spec, target)


def target(server: Server, database: str, **kwargs: Any) -> Target:
    defaults: dict[str, Any] = {
        "name": "app",
        "url": server.url(database),
        "control_url": server.admin_url,
        "setup": None,
        "extensions": (),
        "export_env": (),
        "embedded": False,
    }
    defaults.update(kwargs)
    return Target(**defaults)


def public_relations(server: Server, database: str) -> set[str]:
    with server.connect(database) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public'"
        ).fetchall()
    return {cast(str, r[0]) for r in rows}


def schema_exists(server: Server, database: str, schema: str) -> bool:
    with server.connect(database) as conn:
        return schemas.schema_exists(conn, schema)


@pytest.fixture
def database(databases: Databases) -> str:
    return databases.new("engine")


@pytest.fixture
def worker(server: Server, database: str) -> Iterator[WorkerSchemas]:
    schemas_ = WorkerSchemas([target(server, database)], fresh().token, "gw0", ddl_slots=2)
    schemas_.check()
    yield schemas_
    schemas_.teardown(keep=False)


def test_provision_creates_labelled_bound_schema_with_owner_metadata(
    server: Server, database: str, worker: WorkerSchemas
) -> None:
    handles = worker.provision()
    handle = handles["app"]
    with handle.connect("probe") as conn:
        row = conn.execute(
            "SELECT current_schemas(false), current_setting('application_name')"
        ).fetchone()
        assert row is not None
        path, app = row
        assert path == [worker.schema]
        assert app == naming.connection_label("gw0", worker.namespace, "probe")
    with server.connect(database) as conn:
        row = conn.execute(
            "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
            (worker.schema,),
        ).fetchone()
    owner = schemas.parse_owner_comment(cast(str | None, row[0]) if row else None)
    assert owner is not None
    assert (owner["namespace"], owner["worker"]) == (worker.namespace, "gw0")
    assert {"host", "pid", "created"} <= owner.keys()
    assert [t.database for t in worker.timings] == ["app"]
    assert worker.timings[0].total_s >= worker.timings[0].create_s > 0
    assert worker.teardown(keep=False) == []
    assert not schema_exists(server, database, worker.schema)


def test_missing_schema_fails_closed_and_public_stays_untouched(
    server: Server, database: str, worker: WorkerSchemas
) -> None:
    handle = worker.provision()["app"]
    before = public_relations(server, database)
    with server.connect(database) as conn:
        schemas.drop_schema(conn, worker.schema)
    with pytest.raises(SchemaMissing, match="no schema has been selected to create in"):
        handle.connect()
    # A seeder using the exported URL directly (no shoal code in between) fails loudly too.
    with psycopg.connect(handle.url) as conn, pytest.raises(psycopg.errors.InvalidSchemaName):
        conn.execute("CREATE TABLE seeded (id int)")
    assert public_relations(server, database) == before


def test_failing_setup_leaves_nothing_behind(server: Server, database: str) -> None:
    def seeder(conn: psycopg.Connection[Any]) -> None:
        conn.execute("CREATE TABLE half (id int)")
        raise RuntimeError("seed data is broken")

    hook = make_setup(kind="callable", spec="tests:seeder", target=seeder)
    worker = WorkerSchemas([target(server, database, setup=hook)], fresh().token, "gw1")
    worker.check()
    with pytest.raises(SetupError, match="seed data is broken"):
        worker.provision()
    assert not schema_exists(server, database, worker.schema)
    assert "half" not in public_relations(server, database)


def test_admin_connections_ignore_the_exported_worker_environment(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGOPTIONS", "-c search_path=test_nowhere_gw0")
    monkeypatch.setenv("PGAPPNAME", "pytest_gw0_nowhere")
    with admin_connect(server.admin_url, "shoal_admin_probe") as conn:
        row = conn.execute(
            "SELECT current_setting('search_path'), current_setting('application_name')"
        ).fetchone()
    assert row is not None
    path, app = row
    assert "test_nowhere" not in cast(str, path)
    assert app == "shoal_admin_probe"


def held_slots(server: Server, database: str) -> tuple[int, int]:
    """(granted, waiting) shoal DDL-slot advisory locks in ``database``."""
    with server.connect(database) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE granted), count(*) FILTER (WHERE NOT granted)"
            " FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND objid < 1000"
            " AND database = (SELECT oid FROM pg_database WHERE datname = %s)",
            (naming.LOCK_CLASS, database),
        ).fetchone()
    assert row is not None
    return cast(int, row[0]), cast(int, row[1])


def test_slots_bound_concurrent_ddl_across_runs(server: Server, databases: Databases) -> None:
    # Two slots, three runs whose workers all prefer slot 0 (gw0, gw2, gw4): two get
    # a slot at once (the second takes the free slot 1), the third waits until one is
    # released. Advisory locks are per database: a control database of its own keeps
    # other runs' slots out.
    database = databases.new("slots")
    control = server.url(database)
    leases = [Lease.open(control, fresh().token, f"gw{2 * i}", 2, timeout=5) for i in range(3)]
    release = [threading.Event() for _ in leases]
    entered: list[int] = []
    slot_of: dict[int, int] = {}

    def hold(i: int) -> None:
        with leases[i].ddl_slot(f"gw{2 * i}"):
            row = (
                leases[i]
                .conn.execute(
                    "SELECT objid FROM pg_locks WHERE locktype = 'advisory'"
                    " AND pid = pg_backend_pid() AND classid = %s",
                    (naming.LOCK_CLASS,),
                )
                .fetchone()
            )
            assert row is not None
            slot_of[i] = cast(int, row[0])
            entered.append(i)
            release[i].wait(30)

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(hold, i) for i in range(3)]
        deadline = time.monotonic() + 10
        while len(entered) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        assert len(entered) == 2
        time.sleep(0.3)
        assert len(entered) == 2
        assert held_slots(server, database) == (2, 0)
        assert sorted(slot_of.values()) == [0, 1]
        # Freeing slot 1 lets the waiter in, though it prefers slot 0: waiters do not
        # all queue on their preferred slot while another one sits free.
        release[next(i for i, slot in slot_of.items() if slot == 1)].set()
        deadline = time.monotonic() + 10
        while len(entered) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(entered) == 3
        for event in release:
            event.set()
        for future in futures:
            future.result()
    for lease in leases:
        lease.close()


def test_extensions_are_created_once_outside_worker_schemas(
    server: Server, databases: Databases
) -> None:
    database = databases.new("ext")

    def ensure() -> tuple[str, ...]:
        with admin_connect(server.url(database), "shoal_test") as conn:
            return schemas.ensure_extensions(conn, ("pg_trgm", "citext"))

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: ensure(), range(4)))
    expected = (naming.extension_schema("citext"), naming.extension_schema("pg_trgm"))
    assert results == [expected] * 4


def test_sql_and_callable_setup_run_inside_the_worker_schema(
    server: Server, database: str, tmp_path: Path
) -> None:
    schema_sql = tmp_path / "schema.sql"
    schema_sql.write_text(
        "CREATE TABLE orgs (id serial PRIMARY KEY, name text NOT NULL);\n"
        "CREATE VIEW org_names AS SELECT name FROM orgs;\n"
    )

    def seed(conn: psycopg.Connection[Any]) -> None:
        conn.execute("INSERT INTO orgs (name) VALUES ('acme'), ('globex')")

    sql_hook = make_setup(kind="sql", spec="sql:schema.sql", target=schema_sql)
    seed_hook = make_setup(kind="callable", spec="tests:seed", target=seed)
    worker = WorkerSchemas([target(server, database, setup=sql_hook)], fresh().token, "gw3")
    worker.check()
    before = public_relations(server, database)
    try:
        handle = worker.provision()["app"]
        setups.run(seed_hook, handle)
        with handle.connect() as conn:
            names = [r[0] for r in conn.execute("SELECT name FROM org_names ORDER BY 1")]
            assert names == ["acme", "globex"]
            found = conn.execute("SELECT to_regclass('orgs')::text").fetchone()
            assert found == ("orgs",)
        with server.connect(database) as conn:
            row = conn.execute(
                "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relname = 'org_names'"
            ).fetchall()
            assert row == [(worker.schema,)]
        assert public_relations(server, database) == before
    finally:
        assert worker.teardown(keep=False) == []
