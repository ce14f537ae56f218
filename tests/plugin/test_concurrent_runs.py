"""Several invocations of the same suite at the same moment on one server."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from tests.conftest import Databases, Server, settled
from tests.plugin import inner

# The suite's own code creates tables and writes rows with plain psycopg through the
# URLs shoal exports (the zero-code path), and also through shoal's handles.
ROWS_TEST = """
import os, time
import psycopg
import pytest
from recorder import record

@pytest.fixture(scope="session", autouse=True)
def tables():
    for var in ("PLATFORM_URL", "TENANT_URL"):
        with psycopg.connect(os.environ[var]) as conn:
            conn.execute("create table if not exists items (owner text, n int)")

@pytest.mark.parametrize("n", range(6))
def test_write_then_read_only_own_rows(n, shoal_namespace, shoal_databases):
    for var in ("PLATFORM_URL", "TENANT_URL"):
        with psycopg.connect(os.environ[var]) as conn:
            conn.execute("insert into items values (%s, %s)", (shoal_namespace, n))
            conn.commit()
            time.sleep(0.05)
            owners = {r[0] for r in conn.execute("select owner from items")}
            assert owners == {shoal_namespace}
    with shoal_databases["tenant"].connect() as conn:
        assert {r[0] for r in conn.execute("select owner from items")} == {shoal_namespace}
    record(namespace=shoal_namespace)
"""


def public_tables(server: Server, database: str) -> int:
    with server.connect(database) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"
        ).fetchone()
    assert row is not None
    return cast(int, row[0])


def shoal_schemas(server: Server, database: str, namespaces: set[str]) -> list[str]:
    with server.connect(database) as conn:
        rows = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'test\\_%'")
        names = [cast(str, r[0]) for r in rows]
    return [name for name in names if any(ns in name for ns in namespaces)]


def test_four_invocations_at_once_see_only_their_own_rows(
    tmp_path: Path, server: Server, databases: Databases
) -> None:
    names = {"platform": databases.new("platform"), "tenant": databases.new("tenant")}
    config = {
        "platform": {"url": server.url(names["platform"]), "export_env": ["PLATFORM_URL"]},
        "tenant": {"url": server.url(names["tenant"]), "export_env": ["TENANT_URL"]},
    }
    projects = [
        inner.write_project(tmp_path / f"run{i}", config, {"test_rows.py": ROWS_TEST})
        for i in range(4)
    ]
    # Two with xdist workers, two without: both shapes share the server at once.
    procs = [inner.start(p, "-n", "2" if i % 2 else "0") for i, p in enumerate(projects)]
    results = [inner.finish(p, proc) for p, proc in zip(projects, procs, strict=True)]

    namespaces = set()
    for result in results:
        assert result.returncode == 0, result.output
        assert "6 passed" in result.stdout
        seen = {r["namespace"] for r in result.records}
        assert len(seen) == 1
        namespaces |= seen
    assert len(namespaces) == 4
    for database in names.values():
        assert public_tables(server, database) == 0
        assert shoal_schemas(server, database, namespaces) == []


ALEMBIC_INI = """
[alembic]
script_location = migrations
"""

# An env.py as a project would write it, knowing nothing of shoal: it reads DATABASE_URL.
ENV_PY = """
import os
from alembic import context
from sqlalchemy import create_engine

url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
engine = create_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
"""

MIGRATION = """
from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None

def upgrade():
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_table("docs", sa.Column("id", sa.Integer, primary_key=True), sa.Column("body", sa.Text))
    # Unqualified: found through the search-path tail shoal adds for the extension.
    op.execute("CREATE INDEX docs_trgm ON docs USING gin (body gin_trgm_ops)")
    op.execute("SELECT similarity('shoal', 'shoals')")
"""

ZERO_CODE_TEST = """
import os
import psycopg
import pytest

# Read at import time, as module-level engines and settings objects do.
URL_AT_IMPORT = os.environ["DATABASE_URL"]

@pytest.mark.parametrize("word", ["herring", "sardine", "anchovy", "mackerel"])
def test_plain_psycopg_through_database_url(word):
    assert os.environ["DATABASE_URL"] == URL_AT_IMPORT
    with psycopg.connect(URL_AT_IMPORT) as conn:
        conn.execute("insert into docs (body) values (%s)", (word,))
        best = conn.execute(
            "select body from docs order by similarity(body, %s) desc limit 1", (word[:-1],)
        ).fetchone()[0]
        assert best == word
        version_schema = conn.execute(
            "select n.nspname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where c.relname = 'alembic_version' and n.nspname = current_schema()"
        ).fetchone()
        assert version_schema is not None and version_schema[0].startswith("test_")
"""


def test_unmodified_alembic_suite_with_an_extension_runs_four_at_once(
    tmp_path: Path, server: Server, databases: Databases
) -> None:
    database = databases.new("alembic")
    config = {
        "app": {
            "url": server.url(database),
            "setup": "alembic:alembic.ini",
            "extensions": ["pg_trgm"],
            "export_env": ["DATABASE_URL"],
        }
    }
    files = {
        "alembic.ini": ALEMBIC_INI,
        "migrations/env.py": ENV_PY,
        "migrations/versions/0001_init.py": MIGRATION,
        "test_docs.py": ZERO_CODE_TEST,
    }
    projects = [inner.write_project(tmp_path / f"run{i}", config, files) for i in range(4)]
    procs = [inner.start(p, "-n", "2" if i % 2 else "0") for i, p in enumerate(projects)]
    for project, proc in zip(projects, procs, strict=True):
        result = inner.finish(project, proc)
        assert result.returncode == 0, result.output
        assert "4 passed" in result.stdout
    assert public_tables(server, database) == 0
    assert settled(server, database) == []
