"""The warm pool against real servers: atomic claims, fallback, sweeping, refills."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from pathlib import Path
from typing import Any, Protocol, cast

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Column, Integer, MetaData, String, Table

from shoal import naming, setups
from shoal.errors import SetupError
from shoal.namespace import fresh
from shoal.pg import pool, schemas
from shoal.pg.sweep import sweep
from shoal.pg.worker import WorkerSchemas
from shoal.plan import Target
from shoal.setups import Setup, fingerprint
from tests.conftest import Databases, Server


def make_setup(kind: str, spec: str, target: object) -> Setup:
    return Setup(setups.kind_named(kind), spec, target)


SCHEMA_SQL = """
CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL DEFAULT 'x');
CREATE INDEX ix_items_name ON items (name);
CREATE VIEW item_names AS SELECT name FROM items;
CREATE FUNCTION item_count() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM items';
"""


def target(server: Server, database: str, setup: Setup | None) -> Target:
    return Target(
        name="app",
        url=server.url(database),
        control_url=server.admin_url,
        setup=setup,
        extensions=(),
        export_env=(),
        embedded=False,
    )


@pytest.fixture
def sql_hook(tmp_path: Path) -> Setup:
    path = tmp_path / "schema.sql"
    path.write_text(SCHEMA_SQL)
    return make_setup("sql", "sql:schema.sql", path)


@pytest.fixture
def database(databases: Databases) -> str:
    return databases.new("pool")


def warm(app: Target, size: int, namespace: str | None = None) -> pool.WarmResult:
    current = fingerprint(app.setup)
    assert current is not None
    return pool.warm(
        app,
        current,
        size,
        namespace=namespace or fresh().token,
        tail=(),
        ddl_slots=2,
        timeout=5,
        deadline=time.monotonic() + 120,
    )


def pool_entries(server: Server, database: str) -> list[pool.PoolSchema]:
    with server.connect(database) as conn:
        return pool.list_pool(conn, "app")


def owner(server: Server, database: str, schema: str) -> dict[str, Any] | None:
    with server.connect(database) as conn:
        row = conn.execute(
            "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
            (schema,),
        ).fetchone()
    return None if row is None else schemas.parse_owner_comment(cast(str | None, row[0]))


def test_claimed_schema_works_end_to_end(server: Server, database: str, sql_hook: Setup) -> None:
    app = target(server, database, sql_hook)
    built = warm(app, 1)
    assert len(built.built) == 1
    assert built.ready_after == 1
    worker = WorkerSchemas([app], fresh().token, "gw1", ddl_slots=2, pool=True)
    worker.check()
    try:
        handle = worker.provision()["app"]
        assert worker.timings[0].claimed
        assert worker.timings[0].setup_s == 0
        with handle.connect("probe") as conn:
            path = conn.execute("SELECT current_schemas(false)").fetchone()
            assert path == ([worker.schema],)
            # The serial's sequence, the view and the function all moved with the rename.
            row = conn.execute("INSERT INTO items (name) VALUES ('a') RETURNING id").fetchone()
            assert row == (1,)
            assert conn.execute("SELECT name FROM item_names").fetchall() == [("a",)]
            assert conn.execute("SELECT item_count()").fetchone() == (1,)
            conn.commit()
        data = owner(server, database, worker.schema)
        assert data is not None
        assert (data["namespace"], data["worker"]) == (worker.namespace, "gw1")
        assert naming.parse_pool_schema(data["pooled"]) is not None
        assert pool_entries(server, database) == []
    finally:
        assert worker.teardown(keep=False) == []
    assert owner(server, database, worker.schema) is None


def catalog(server: Server, database: str) -> list[tuple[str, str | None]]:
    with server.connect(database) as conn:
        rows = conn.execute(
            "SELECT nspname, obj_description(oid, 'pg_namespace') FROM pg_namespace ORDER BY 1"
        ).fetchall()
    return [(str(name), cast(str | None, comment)) for name, comment in rows]


def test_a_rehearsed_claim_leaves_nothing_and_the_real_claim_still_takes(
    server: Server, database: str, sql_hook: Setup
) -> None:
    app = target(server, database, sql_hook)
    warm(app, 1)
    current = fingerprint(app.setup)
    assert current is not None
    before = catalog(server, database)
    worker = WorkerSchemas([app], fresh().token, "gw0", ddl_slots=2, pool=True)
    worker.check()
    try:
        with server.connect(database) as conn:
            assert pool.rehearse_claim(conn, current, worker.schema, "{}")
        worker.prepare()  # rehearses too, on its own connection
        assert catalog(server, database) == before
        worker.provision()
        assert worker.timings[0].claimed
    finally:
        assert worker.teardown(keep=False) == []


def test_empty_pool_falls_back_to_building_in_place(
    server: Server, database: str, sql_hook: Setup
) -> None:
    app = target(server, database, sql_hook)
    worker = WorkerSchemas([app], fresh().token, "gw0", ddl_slots=2, pool=True)
    worker.check()
    try:
        handle = worker.provision()["app"]
        assert not worker.timings[0].claimed
        with handle.connect() as conn:
            assert conn.execute("SELECT item_count()").fetchone() == (0,)
    finally:
        worker.teardown(keep=False)


def test_teardown_renames_on_a_new_connection_when_the_kept_one_was_dropped(
    server: Server, database: str, sql_hook: Setup
) -> None:
    app = target(server, database, sql_hook)
    worker = WorkerSchemas([app], fresh().token, "gw0", ddl_slots=2, pool=True)
    worker.check()
    worker.provision()  # keeps its connection for teardown's rename
    label = naming.admin_label(worker.worker, worker.namespace)
    with server.connect(database) as conn:
        killed = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (label,),
        ).fetchall()
    assert killed == [(True,)]
    assert worker.teardown(keep=False, rename=True) == []
    assert [d["database"] for d in worker.to_drop] == ["app"]
    names = {name for name, _ in catalog(server, database)}
    assert worker.schema not in names
    (renamed,) = [
        n for n in names if (d := naming.parse_to_drop(n)) and d.namespace == worker.namespace
    ]
    with server.connect(database) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(renamed)))


def test_half_built_pool_schema_is_never_claimed(
    server: Server, database: str, sql_hook: Setup
) -> None:
    app = target(server, database, sql_hook)
    current = fingerprint(sql_hook)
    assert current is not None
    builder = fresh().token
    building = naming.pool_schema_name(current, "0000000b", ready=False)
    # A ready name whose comment still says "building" (no valid build writes that).
    impostor = naming.pool_schema_name(current, "0000000c", ready=True)
    with server.connect(database) as conn:
        schemas.create_schema(conn, building, pool.pool_comment("building", current, builder))
        schemas.create_schema(conn, impostor, pool.pool_comment("building", current, builder))
        assert pool.claim(conn, current, naming.schema_name(fresh().token, "gw0"), str) is None
    worker = WorkerSchemas([app], fresh().token, "gw0", ddl_slots=2, pool=True)
    worker.check()
    try:
        worker.provision()
        assert not worker.timings[0].claimed
    finally:
        worker.teardown(keep=False)
    assert {e.schema for e in pool_entries(server, database)} == {building, impostor}


def test_a_leftover_worker_schema_makes_the_claim_give_way(
    server: Server, database: str, sql_hook: Setup
) -> None:
    app = target(server, database, sql_hook)
    (ready,) = warm(app, 1).built
    current = fingerprint(sql_hook)
    assert current is not None
    leftover = naming.schema_name(fresh().token, "gw0")
    with server.connect(database) as conn:
        schemas.create_schema(conn, leftover, "{}")
        assert pool.claim(conn, current, leftover, str) is None
    assert [e.schema for e in pool_entries(server, database)] == [ready]


def test_a_schema_being_claimed_is_passed_over_then_taken(
    server: Server, database: str, sql_hook: Setup
) -> None:
    app = target(server, database, sql_hook)
    (ready,) = warm(app, 1).built
    current = fingerprint(sql_hook)
    assert current is not None
    mine = naming.schema_name(fresh().token, "gw0")
    with server.connect(database) as holder, server.connect(database) as conn:
        # The outcome comes back as a notice; a session that hides notices still gets it.
        conn.execute("SET client_min_messages = error")
        holder.execute("SELECT pg_advisory_lock(%s, %s)", naming.pool_claim_lock(ready))
        assert pool.take(conn, ready, mine, "{}") is False  # no exception either
        assert [(e.schema, e.state) for e in pool_entries(server, database)] == [(ready, "ready")]
        holder.execute("SELECT pg_advisory_unlock(%s, %s)", naming.pool_claim_lock(ready))
        assert pool.take(conn, ready, mine, "{}") is True
        assert pool.take(conn, ready, mine, "{}") is False  # gone: not ready
        comment = conn.execute(
            "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
            (mine,),
        ).fetchone()
    assert comment == ("{}",)  # renamed and relabelled
    assert pool_entries(server, database) == []


def _claimer(url: str, current: str, namespace: str, worker: str, barrier: Any, out: Any) -> None:
    schema = naming.schema_name(namespace, worker)
    with psycopg.connect(url, autocommit=True, application_name="shoal_tests") as conn:
        barrier.wait(timeout=60)
        taken = pool.claim(
            conn,
            current,
            schema,
            lambda name: schemas.owner_comment(namespace, worker, pooled=name),
        )
    out.put((schema, taken))


def test_a_claim_is_atomic_under_eight_concurrent_processes(
    server: Server, database: str, sql_hook: Setup
) -> None:
    app = target(server, database, sql_hook)
    ready = set(warm(app, 5).built)
    assert len(ready) == 5
    current = fingerprint(sql_hook)
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(8), ctx.Queue()
    # Eight claimers: four runs of two workers each, in separate processes.
    claimers = [(fresh().token, f"gw{w}") for _ in range(4) for w in range(2)]
    procs = [
        ctx.Process(target=_claimer, args=(app.url, current, ns, w, barrier, out))
        for ns, w in claimers
    ]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    taken = [pool_name for _, pool_name in results if pool_name is not None]
    assert sorted(taken) == sorted(ready)  # each claimed exactly once, none lost
    assert pool_entries(server, database) == []
    for schema, pool_name in results:
        data = owner(server, database, schema)
        if pool_name is None:
            assert data is None
        else:
            assert data is not None
            assert naming.schema_name(data["namespace"], data["worker"]) == schema
            assert data["pooled"] == pool_name
            with server.connect(database) as conn:
                tables = conn.execute(
                    "SELECT count(*) FROM pg_tables WHERE schemaname = %s", (schema,)
                ).fetchone()
            assert tables == (1,)


def models(extra: bool) -> MetaData:
    metadata = MetaData()
    Table(
        "users",
        metadata,
        Column("id", Integer, primary_key=True),
        *([Column("email", String(100))] if extra else []),
    )
    return metadata


def test_changed_model_gets_a_new_fingerprint_and_the_stale_pool_is_swept(
    server: Server, database: str
) -> None:
    old = target(server, database, make_setup("metadata", "m:metadata", models(False)))
    new = target(server, database, make_setup("metadata", "m:metadata", models(True)))
    old_fp, new_fp = fingerprint(old.setup), fingerprint(new.setup)
    assert old_fp is not None
    assert new_fp is not None
    assert old_fp != new_fp
    stale = warm(old, 1).built
    current = warm(new, 1).built
    # Half-built: one whose builder is gone, one whose builder still holds its lease.
    dead, alive = fresh().token, fresh().token
    dead_name = naming.pool_schema_name(new_fp, "0000dead", ready=False)
    alive_name = naming.pool_schema_name(new_fp, "000a11fe", ready=False)
    with server.connect(database) as conn:
        schemas.create_schema(conn, dead_name, pool.pool_comment("building", new_fp, dead))
        schemas.create_schema(conn, alive_name, pool.pool_comment("building", new_fp, alive))
    lease = psycopg.connect(server.admin_url, application_name=naming.lease_label(alive, "pool"))
    try:
        urls = {"app": server.url(database)}
        unknown = sweep(urls, grace_s=0)  # current fingerprint unknown: ready ones stay
        assert sorted(unknown.databases["app"].dropped) == [dead_name]
        result = sweep(urls, grace_s=0, fingerprints={"app": new_fp})
    finally:
        lease.close()
    assert result.databases["app"].dropped == stale
    assert {e.schema for e in pool_entries(server, database)} == {*current, alive_name}
    # The new model's schema is claimable and holds the new column.
    worker = WorkerSchemas([new], fresh().token, "gw0", ddl_slots=2, pool=True)
    worker.check()
    try:
        with worker.provision()["app"].connect() as conn:
            assert worker.timings[0].claimed
            conn.execute("SELECT email FROM users")
    finally:
        worker.teardown(keep=False)


def test_concurrent_refills_do_not_overfill(server: Server, database: str, sql_hook: Setup) -> None:
    app = target(server, database, sql_hook)
    results: list[pool.WarmResult] = []
    threads = [threading.Thread(target=lambda: results.append(warm(app, 2))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sum(len(r.built) for r in results) == 2
    assert len([e for e in pool_entries(server, database) if e.state == "ready"]) == 2
    assert warm(app, 2).built == []  # full: nothing more to build


class _Fingerprinted(Protocol):
    """A setup function with the attribute users set to supply its fingerprint."""

    shoal_fingerprint: object

    def __call__(self, conn: psycopg.Connection[Any]) -> None: ...


def _embeds_its_schema_name(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute("SELECT current_schema()").fetchone()
    assert row is not None
    conn.execute("CREATE TABLE t (id int)")
    body = f"SELECT count(*)::int FROM {row[0]}.t"
    conn.execute(
        sql.SQL("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS {}").format(sql.Literal(body))
    )
    conn.commit()


cast(_Fingerprinted, _embeds_its_schema_name).shoal_fingerprint = "v1"


def test_a_setup_that_embeds_its_schema_name_is_refused(server: Server, database: str) -> None:
    app = target(server, database, make_setup("callable", "m:f", _embeds_its_schema_name))
    with pytest.raises(SetupError, match="names its schema"):
        warm(app, 1)
    assert pool_entries(server, database) == []
