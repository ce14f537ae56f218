"""Real inner pytest sessions record what they see from inside; we assert on it."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from shoal import naming
from tests.conftest import Databases, Server, settled
from tests.plugin import inner

PROBE_TEST = """
import psycopg
from recorder import record

def probe(shoal_namespace, shoal_schema, shoal_databases, test):
    for name, handle in shoal_databases.items():
        with handle.connect() as conn:
            schemas, app = conn.execute(
                "select current_schemas(false), current_setting('application_name')"
            ).fetchone()
        record(test=test, database=name, namespace=shoal_namespace, schema=shoal_schema,
               handle_schema=handle.schema, schemas=schemas, application_name=app)

def test_a(shoal_namespace, shoal_schema, shoal_databases):
    probe(shoal_namespace, shoal_schema, shoal_databases, "a")

def test_b(shoal_namespace, shoal_schema, shoal_databases):
    probe(shoal_namespace, shoal_schema, shoal_databases, "b")

def test_c(shoal_namespace, shoal_schema, shoal_databases):
    probe(shoal_namespace, shoal_schema, shoal_databases, "c")

def test_d(shoal_namespace, shoal_schema, shoal_databases):
    probe(shoal_namespace, shoal_schema, shoal_databases, "d")
"""


def leftover_schemas(server: Server, database: str, namespace: str) -> list[str]:
    with server.connect(database) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s",
            (f"test\\_{namespace}\\_%",),
        ).fetchall()
    return [cast(str, r[0]) for r in rows]


@pytest.mark.parametrize("xdist_args", [["-n", "0"], ["-n", "2"]], ids=["n0", "n2"])
def test_each_worker_gets_its_own_schema_in_every_database(
    tmp_path: Path, server: Server, databases: Databases, xdist_args: list[str]
) -> None:
    names = {"platform": databases.new("platform"), "tenant": databases.new("tenant")}
    project = inner.write_project(
        tmp_path,
        {key: {"url": server.url(db)} for key, db in names.items()},
        {"test_probe.py": PROBE_TEST},
    )
    result = inner.run(project, *xdist_args)
    assert result.returncode == 0, result.output
    records = result.records
    assert len(records) == 4 * 2

    namespaces = {r["namespace"] for r in records}
    assert len(namespaces) == 1
    namespace = namespaces.pop()
    assert f"shoal: namespace {namespace}" in result.stdout

    workers = set()
    for r in records:
        label = naming.parse_label(r["application_name"])
        assert label is not None
        assert label.namespace == namespace
        parsed = naming.parse_schema(r["schema"])
        assert parsed == naming.SchemaName(namespace, label.worker)
        assert r["schemas"] == [r["schema"]] == [r["handle_schema"]]
        workers.add(label.worker)
    expected_workers = {"main"} if xdist_args[1] == "0" else {"gw0", "gw1"}
    assert workers <= expected_workers
    # One schema per (worker, database), the same name across the worker's databases.
    assert {(r["schema"], r["database"]) for r in records} == {
        (naming.schema_name(namespace, w), d) for w in workers for d in names
    }
    assert f"{len(workers) * len(names)} schemas provisioned" in result.stdout
    for db in names.values():
        assert leftover_schemas(server, db, namespace) == []


def test_default_database_lives_on_the_embedded_server(tmp_path: Path, embedded: Server) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "test_default.py").write_text(
        "def test_default(shoal_databases, shoal_schema):\n"
        "    assert list(shoal_databases) == ['default']\n"
        "    with shoal_databases['default'].connect() as conn:\n"
        "        assert conn.execute('select current_schemas(false)').fetchone()[0] == [shoal_schema]\n"
        "        assert conn.info.dbname == 'default'\n"
    )
    result = inner.run(project)
    assert result.returncode == 0, result.output


FAILING_TEST = """
def test_fails(shoal_databases):
    with shoal_databases["app"].connect() as conn:
        conn.execute("create table evidence (id int)")
        conn.commit()
    assert False, "look at the evidence"
"""


@pytest.mark.parametrize("xdist_args", [["-n", "0"], ["-n", "1"]], ids=["n0", "n1"])
def test_keep_on_failure_keeps_schemas_and_says_how_to_connect(
    tmp_path: Path, embedded: Server, embedded_databases: Databases, xdist_args: list[str]
) -> None:
    database = embedded_databases.new("keep")
    project = inner.write_project(
        tmp_path, {"app": {"url": embedded.url(database)}}, {"test_fail.py": FAILING_TEST}
    )
    result = inner.run(project, "--shoal-keep-on-failure", *xdist_args)
    assert result.returncode == 1, result.output
    assert "shoal: schemas kept for inspection" in result.stdout
    with embedded.connect(database) as conn:
        kept = [
            r[0]
            for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'test\\_%'")
        ]
        assert len(kept) == 1
        assert f"app: schema {kept[0]} — psql" in result.stdout
        assert conn.execute(f"SELECT count(*) FROM {kept[0]}.evidence").fetchone() == (0,)
        conn.execute(f"DROP SCHEMA {kept[0]} CASCADE")


def test_failed_run_without_keep_drops_its_schemas(
    tmp_path: Path, embedded: Server, embedded_databases: Databases
) -> None:
    database = embedded_databases.new("nokeep")
    project = inner.write_project(
        tmp_path, {"app": {"url": embedded.url(database)}}, {"test_fail.py": FAILING_TEST}
    )
    result = inner.run(project)
    assert result.returncode == 1, result.output
    assert settled(embedded, database) == []
