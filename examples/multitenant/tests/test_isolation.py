"""Where this worker's connections land, checked from the inside."""

from __future__ import annotations

import os
from typing import Any

import psycopg
import pytest
from multitenant_app import db
from multitenant_app.models import platform_metadata, tenant_metadata
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from shoal import DatabaseHandle, naming

DATABASES = ("platform", "tenant_eu", "tenant_us")
APP_TABLES = {
    "platform": sorted(platform_metadata.tables),
    "tenant_eu": sorted(tenant_metadata.tables),
    "tenant_us": sorted(tenant_metadata.tables),
}


def _one(conn: psycopg.Connection[Any], query: sql.Composable | str, *args: object) -> Any:
    row = conn.execute(query, args or None).fetchone()
    assert row is not None
    return row[0] if len(row) == 1 else row


@pytest.mark.parametrize("database", DATABASES)
def test_connections_land_in_the_worker_schema_labelled(
    shoal_databases: dict[str, DatabaseHandle],
    shoal_schema: str,
    shoal_namespace: str,
    worker: str,
    database: str,
) -> None:
    with shoal_databases[database].connect("probe") as conn:
        schemas, current, dbname, application_name = _one(
            conn,
            "SELECT current_schemas(false), current_schema(), current_database(),"
            " current_setting('application_name')",
        )
    assert schemas == [shoal_schema]
    assert current == shoal_schema
    assert dbname == database
    label = naming.parse_label(application_name)
    assert label is not None, application_name
    assert (label.worker, label.namespace, label.suffix) == (worker, shoal_namespace, "probe")


def test_schema_name_carries_namespace_and_worker(
    shoal_schema: str, shoal_namespace: str, worker: str
) -> None:
    assert naming.parse_schema(shoal_schema) == naming.SchemaName(shoal_namespace, worker)


@pytest.mark.parametrize("database", DATABASES)
def test_app_tables_exist_in_the_worker_schema_and_not_in_public(
    shoal_databases: dict[str, DatabaseHandle], shoal_schema: str, database: str
) -> None:
    expected = APP_TABLES[database]
    with shoal_databases[database].connect() as conn:
        mine = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (shoal_schema,)
        ).fetchall()
        in_public = _one(
            conn,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY(%s)",
            expected,
        )
    assert [name for (name,) in mine] == expected
    assert in_public == 0


def test_exported_urls_are_the_worker_urls(shoal_databases: dict[str, DatabaseHandle]) -> None:
    for database, variable in db.URL_VARIABLES.items():
        assert os.environ[variable] == shoal_databases[database].url


def test_plain_psycopg_on_the_exported_url_lands_in_the_worker_schema(
    shoal_schema: str, shoal_namespace: str
) -> None:
    # What any code does with a DATABASE_URL: hand it to libpq, knowing nothing of shoal.
    with psycopg.connect(os.environ["TENANT_US_DATABASE_URL"]) as conn:
        schemas, dbname, application_name = _one(
            conn,
            "SELECT current_schemas(false), current_database(),"
            " current_setting('application_name')",
        )
    assert (schemas, dbname) == ([shoal_schema], "tenant_us")
    label = naming.parse_label(application_name)
    assert label is not None
    assert label.namespace == shoal_namespace


def test_libpq_environment_pins_connections_that_set_nothing(
    shoal_databases: dict[str, DatabaseHandle], shoal_schema: str, worker: str
) -> None:
    # A client that builds its own connection string from host and database name only:
    # PGOPTIONS and PGAPPNAME, exported by shoal, still put it in the worker schema.
    params = conninfo_to_dict(shoal_databases["platform"].url)
    params.pop("options")
    params.pop("application_name")
    with psycopg.connect(**params) as conn:
        schemas, application_name = _one(
            conn, "SELECT current_schemas(false), current_setting('application_name')"
        )
    assert schemas == [shoal_schema]
    label = naming.parse_label(application_name)
    assert label is not None
    assert label.worker == worker


def test_rows_are_invisible_from_outside_the_worker_schema(
    shoal_databases: dict[str, DatabaseHandle], shoal_schema: str, unique: str
) -> None:
    email = f"{unique}@example.com"
    with shoal_databases["platform"].connect() as conn:
        conn.execute("INSERT INTO users (email, full_name) VALUES (%s, 'Iso Lation')", (email,))
        conn.commit()

    # The same database with the default search path: the table is not even there.
    params = conninfo_to_dict(shoal_databases["platform"].url)
    params["options"] = "-c search_path=public"
    with psycopg.connect(**params) as outside:
        assert _one(outside, "SELECT to_regclass('users')") is None
        qualified = sql.SQL("SELECT count(*) FROM {}.users WHERE email = %s").format(
            sql.Identifier(shoal_schema)
        )
        assert _one(outside, qualified, email) == 1


def test_previous_tests_left_nothing_behind(shoal_databases: dict[str, DatabaseHandle]) -> None:
    # Whatever ran before on this worker, in whatever order: every data table is empty.
    for database in DATABASES:
        with shoal_databases[database].connect() as conn:
            for table in APP_TABLES[database]:
                if table == "roles":
                    continue
                query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
                assert _one(conn, query) == 0, f"{database}.{table}"
