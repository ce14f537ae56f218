"""An application of the shape real ones have, run four at once, twice, beside a dev database.

The project is tests/projects/appshape (see its README): settings and a module-level engine
read from DATABASE_URL at import time, an Alembic env.py that builds its own engine from
DATABASE_URL, a first migration that creates its extension, ``filterwarnings = ["error"]``.
The shell's DATABASE_URL names a developer's database whose catalog and rows must come out
exactly as they went in.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from shoal import conninfo, naming
from shoal.pg import pool
from tests.conftest import Databases, Server
from tests.plugin import inner

PROJECT = Path(__file__).parents[1] / "projects" / "appshape"
RUNS = 4


def sqlalchemy_url(server: Server, database: str) -> str:
    return conninfo.with_scheme(server.url(database), "postgresql+psycopg")


def catalog(
    server: Server, database: str
) -> tuple[list[tuple[str, str]], list[tuple[object, ...]]]:
    """Every schema and relation outside the system's, and the rows of the dev table."""
    with server.connect(database) as conn:
        relations = conn.execute(
            "SELECT n.nspname, coalesce(c.relname, '') FROM pg_namespace n"
            " LEFT JOIN pg_class c ON c.relnamespace = n.oid"
            " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
            " ORDER BY 1, 2"
        ).fetchall()
        rows = conn.execute("SELECT * FROM customers ORDER BY 1").fetchall()
    return [(str(a), str(b)) for a, b in relations], rows


def schemas_like(server: Server, database: str, like: str) -> list[str]:
    with server.connect(database) as conn:
        rows = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (like,))
        return sorted(str(r[0]) for r in rows)


def relation_count(server: Server, database: str, schema: str) -> int:
    with server.connect(database) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind = 'r'",
            (schema,),
        ).fetchone()
    return int(str(row[0])) if row else 0


def settled(server: Server, database: str, timeout: float = 120) -> None:
    """Wait for the background refills: no half-built pool schema and no refill session."""
    deadline = time.monotonic() + timeout
    while True:
        with server.connect(database) as conn:
            building = [e for e in pool.list_pool(conn, "app") if e.state != "ready"]
            refills = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s",
                ("pytest\\_%\\_pool%",),
            ).fetchone()
            ready = [e for e in pool.list_pool(conn, "app") if e.state == "ready"]
        # A refill starts detached after each run: wait until one has published, too.
        if ready and not building and refills is not None and refills[0] == 0:
            return
        assert time.monotonic() < deadline, f"refills still running: {building}"
        time.sleep(0.25)


@dataclass(frozen=True)
class Shape:
    """A fresh copy of the project, its test database and the developer's database beside it."""

    root: Path
    test_db: str
    dev_db: str
    env: dict[str, str]


@pytest.fixture
def shape(tmp_path: Path, embedded: Server, embedded_databases: Databases) -> Shape:
    root = tmp_path / "appshape"
    shutil.copytree(PROJECT, root)
    test_db, dev_db = embedded_databases.new("shape"), embedded_databases.new("dev")
    with embedded.connect(dev_db) as conn:
        conn.execute("CREATE TABLE customers (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO customers VALUES (1, 'a developer''s row'), (2, 'another')")
    env = {
        "DATABASE_URL": sqlalchemy_url(embedded, dev_db),
        "APP_TEST_DATABASE_URL": sqlalchemy_url(embedded, test_db),
        "SHOAL_POOL_SIZE": "2",
        "SHOAL_HOME": str(tmp_path / "home"),
    }
    return Shape(root=root, test_db=test_db, dev_db=dev_db, env=env)


def run_together(root: Path, env: dict[str, str], *args: str) -> list[inner.InnerRun]:
    procs = [inner.start(root, *args, env=env) for _ in range(RUNS)]
    return [inner.finish(root, proc) for proc in procs]


def test_four_at_once_twice_beside_a_dev_database_touch_nothing_of_it(
    shape: Shape, embedded: Server
) -> None:
    root, env = shape.root, shape.env
    test_db, dev_db = shape.test_db, shape.dev_db
    dev_before = catalog(embedded, dev_db)

    for _round in ("cold", "warm"):
        runs = run_together(root, env, "-n", "2")
        assert [r.returncode for r in runs] == [0] * RUNS, [r.output for r in runs]
        settled(embedded, test_db)
    records = inner.read_records(root)
    owners = [json.loads(r["owner"]) for r in records]
    namespaces = {o["namespace"] for o in owners}
    assert len(namespaces) == 2 * RUNS
    assert all(naming.parse_schema(r["schema"]) for r in records)
    # The second round took ready schemas from the pool the first round's refills built.
    assert any("pooled" in o for o in owners)

    assert catalog(embedded, dev_db) == dev_before
    with embedded.connect(test_db) as conn:
        public = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert public.fetchone() == (0,)
    assert schemas_like(embedded, test_db, naming.WORKER_SCHEMA_LIKE) == []
    ready = schemas_like(embedded, test_db, naming.POOL_READY_LIKE)
    assert ready
    assert all(relation_count(embedded, test_db, schema) == 3 for schema in ready)  # + version


@pytest.mark.parametrize("how", ["-n 0", "shoal run"])
def test_green_under_filterwarnings_error_alone_and_under_shoal_run(
    shape: Shape, embedded: Server, how: str
) -> None:
    root, env = shape.root, shape.env
    if how == "shoal run":
        records = root / ".records"
        records.mkdir(exist_ok=True)
        done = subprocess.run(
            [sys.executable, "-m", "shoal", "run", "--no-sweep", "--", "-n", "2"],
            cwd=root,
            env=inner.clean_env(RECORD_DIR=str(records), **env),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        output, code = done.stdout + done.stderr, done.returncode
    else:
        result = inner.run(root, "-n", "0", env=env)
        output, code = result.output, result.returncode
    assert code == 0, output
    assert "warnings summary" not in output, output
    assert "Warning:" not in output, output
    settled(embedded, shape.test_db)
