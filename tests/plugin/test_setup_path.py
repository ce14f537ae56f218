"""One path for every setup: a kind registered by another package, and the refill's binding."""

from __future__ import annotations

import json
import time
from pathlib import Path

from shoal import naming
from tests.conftest import Databases, Server
from tests.plugin import inner

# A package of its own, installed the way pip installs one: a dist-info directory whose
# entry_points.txt registers a setup kind in the `shoal.setups` group.
KIND_PACKAGE = '''
class TablesKind:
    """`tables:<n>`: n empty tables t1..tn."""

    name = "tables"
    expected = "'tables:<count>'"

    def parse(self, spec, root):
        prefix, _, count = spec.partition(":")
        return int(count) if prefix == "tables" and count.isdigit() else None

    def fingerprint(self, count):
        return [str(count).encode()]

    def run(self, count, handle):
        with handle.connect("tables") as conn:
            for number in range(1, count + 1):
                conn.execute(f"CREATE TABLE t{number} (id int)")
'''

KIND_TEST = """
from recorder import record

def test_tables(shoal_databases):
    with shoal_databases["app"].connect() as conn:
        names = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1"
        )]
    record(tables=names)

def test_second(shoal_databases):
    test_tables(shoal_databases)
"""


def install_kind_package(site: Path) -> Path:
    (site / "shoal_tables_kind").mkdir(parents=True)
    (site / "shoal_tables_kind" / "__init__.py").write_text(KIND_PACKAGE)
    info = site / "shoal_tables_kind-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shoal-tables-kind\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[shoal.setups]\ntables = shoal_tables_kind:TablesKind\n"
    )
    return site


def test_a_setup_kind_registered_through_the_entry_point_group_builds_every_worker(
    tmp_path: Path, server: Server, databases: Databases
) -> None:
    site = install_kind_package(tmp_path / "site")
    project = inner.write_project(
        tmp_path / "project",
        {"app": {"url": server.url(databases.new("kind")), "setup": "tables:3"}},
        {"test_kind.py": KIND_TEST},
    )
    result = inner.run(project, "-n", "2", env={"PYTHONPATH": str(site)})
    assert result.returncode == 0, result.output
    assert len(result.records) == 2
    assert all(r["tables"] == ["t1", "t2", "t3"] for r in result.records)


def test_without_the_package_the_spec_is_refused_naming_the_kinds(
    tmp_path: Path, server: Server, databases: Databases
) -> None:
    project = inner.write_project(
        tmp_path / "project",
        {"app": {"url": server.url(databases.new("nokind")), "setup": "tables:3"}},
        {"test_kind.py": KIND_TEST},
    )
    result = inner.run(project, "-n", "0")
    assert result.returncode == 4, result.output
    assert "databases.app.setup = 'tables:3'" in result.output
    assert "unknown setup kind 'tables'" in result.output
    assert "Traceback" not in result.output


# A setup that builds with a connection of its own, from the environment, the way an
# Alembic env.py that reads DATABASE_URL does, and records what it saw.
ENV_SETUP = """
import json, os, pathlib
import psycopg

def build(conn):
    seen = {
        "pid": os.getpid(),
        "pgoptions": os.environ.get("PGOPTIONS"),
        "pgappname": os.environ.get("PGAPPNAME"),
        "database_url": os.environ.get("DATABASE_URL"),
    }
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as own:
        own.execute("CREATE TABLE items (id int)")
        seen["own_schema"] = own.execute("SELECT current_schema()").fetchone()[0]
    with open(pathlib.Path(os.environ["RECORD_DIR"]) / "setups.jsonl", "a") as out:
        out.write(json.dumps(seen) + "\\n")

build.shoal_fingerprint = "items-v1"
"""

ENV_TEST = """
def test_items(shoal_databases):
    with shoal_databases["app"].connect() as conn:
        conn.execute("INSERT INTO items VALUES (1)")
"""


def test_the_refill_builds_with_the_pool_schema_bound_in_its_environment(
    tmp_path: Path, server: Server, databases: Databases
) -> None:
    database = databases.new("refillenv")
    project = inner.write_project(
        tmp_path / "project",
        {
            "app": {
                "url": server.url(database),
                "setup": "envsetup:build",
                "export_env": ["DATABASE_URL"],
            }
        },
        {"envsetup.py": ENV_SETUP, "test_items.py": ENV_TEST},
    )
    # The shell points DATABASE_URL at a database the setup must never touch.
    shell_url = "postgresql://nobody@127.0.0.1:1/developers_dev_database"
    env = {"SHOAL_POOL_SIZE": "1", "SHOAL_HOME": str(tmp_path / "home"), "DATABASE_URL": shell_url}
    result = inner.run(project, "-n", "0", env=env)
    assert result.returncode == 0, result.output

    setups = project / ".records" / "setups.jsonl"
    deadline = time.monotonic() + 90
    while True:
        seen = [json.loads(line) for line in setups.read_text().splitlines()]
        refills = [s for s in seen if naming.parse_pool_schema(s["own_schema"])]
        if refills:
            break
        assert time.monotonic() < deadline, f"no refill build seen: {seen}"
        time.sleep(0.25)
    # The run's own worker built in its schema; the refill, in a separate process, in
    # the pool schema it was building: PGOPTIONS, PGAPPNAME and DATABASE_URL all bound.
    worker = [s for s in seen if naming.parse_schema(s["own_schema"])]
    assert worker, seen
    refill = refills[0]
    building = refill["own_schema"]
    parsed = naming.parse_pool_schema(building)
    assert parsed is not None
    assert parsed.ready is False
    assert f"search_path={building}" in refill["pgoptions"]
    assert f"search_path%3D{building}" in refill["database_url"].replace("=", "%3D")
    assert refill["database_url"] != shell_url
    assert naming.parse_label(refill["pgappname"]) is not None
    assert all(s["database_url"] != shell_url for s in seen)
