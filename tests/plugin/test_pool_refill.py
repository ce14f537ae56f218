"""The pool through real inner runs: a run refills it in the background, the next claims."""

from __future__ import annotations

import time
from pathlib import Path

from shoal import naming
from shoal.pg import pool
from tests.conftest import Databases, Server
from tests.plugin import inner

SCHEMA_SQL = "CREATE TABLE items (id serial PRIMARY KEY, name text);\n"

OWNER_TEST = """
import json
from recorder import record

def test_owner(shoal_schema, shoal_databases):
    with shoal_databases["app"].connect() as conn:
        comment = conn.execute(
            "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
            (shoal_schema,),
        ).fetchone()[0]
        conn.execute("INSERT INTO items (name) VALUES ('x')")
    record(schema=shoal_schema, owner=json.loads(comment))

def test_other(shoal_databases):
    pass
"""


def ready(server: Server, database: str) -> int:
    with server.connect(database) as conn:
        return sum(1 for e in pool.list_pool(conn, "app") if e.state == "ready")


def wait_for_ready(server: Server, database: str, count: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while ready(server, database) < count:
        assert time.monotonic() < deadline, f"the pool never reached {count} ready schemas"
        time.sleep(0.25)


def test_a_run_refills_the_pool_and_the_next_run_claims_from_it(
    tmp_path: Path, server: Server, databases: Databases
) -> None:
    database = databases.new("refill")
    project = inner.write_project(
        tmp_path / "project",
        {"app": {"url": server.url(database), "setup": "sql:schema.sql"}},
        {"schema.sql": SCHEMA_SQL, "test_owner.py": OWNER_TEST},
    )
    home = tmp_path / "home"
    # pool_size 1, two workers: the refill keeps one ready schema per worker of the run.
    env = {"SHOAL_POOL_SIZE": "1", "SHOAL_HOME": str(home)}

    first = inner.run(project, "-n", "2", env=env)
    assert first.returncode == 0, first.output
    assert all("pooled" not in r["owner"] for r in first.records)  # nothing to claim yet
    wait_for_ready(server, database, 2)
    logs = list((home / "logs").glob(naming.pool_log_glob()))
    assert len(logs) == 1
    assert naming.parse_pool_log_filename(logs[0].name) is not None

    (project / ".records" / "gw0.jsonl").unlink(missing_ok=True)
    (project / ".records" / "gw1.jsonl").unlink(missing_ok=True)
    second = inner.run(project, "-n", "2", env=env)
    assert second.returncode == 0, second.output
    (record,) = second.records
    assert naming.parse_pool_schema(record["owner"]["pooled"]) is not None
    assert record["owner"]["namespace"] in record["schema"]
    # And the second run's refill tops the pool up again before the database goes.
    wait_for_ready(server, database, 2)
    time.sleep(0.5)
    assert ready(server, database) == 2
