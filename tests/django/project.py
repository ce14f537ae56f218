"""The Django example as an inner project: a copy with its own databases and a recorder."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql

from shoal import conninfo, naming
from tests.conftest import Server, token
from tests.plugin import inner

EXAMPLE = Path(__file__).parents[2] / "examples" / "django"
# Records, once per worker, where Django's connections really go.
RECORDER_CONFTEST = """
import json, os, pathlib

import pytest


@pytest.fixture(scope="session", autouse=True)
def _record_binding(django_db_setup, django_db_blocker):
    from django.db import connections

    out = pathlib.Path(os.environ["RECORD_DIR"])
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with django_db_blocker.unblock():
        for alias in ("default", "ledger"):
            if not str(connections[alias].settings_dict["NAME"]).startswith("test_"):
                continue  # no test of this run uses it: Django did not set it up
            with connections[alias].cursor() as cursor:
                cursor.execute(
                    "SELECT current_database(), current_schemas(false),"
                    " current_setting('application_name'),"
                    " (SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace"
                    "  WHERE nspname = current_schema())"
                )
                database, schemas, label, owner = cursor.fetchone()
            with open(out / f"{worker}.jsonl", "a") as fh:
                fh.write(json.dumps({"alias": alias, "database": database,
                                     "schemas": list(schemas), "label": label,
                                     "owner": owner}) + "\\n")
"""


@dataclass
class DjangoProject:
    root: Path
    server: Server
    name: str  # NAME of the default alias; Django's test databases are test_<name>[_ledger]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def test_databases(self) -> list[str]:
        return [f"test_{self.name}", f"test_{self.name}_ledger"]

    def start(self, *args: str, env: dict[str, str] | None = None) -> object:
        return inner.start(self.root, *args, env={**self.env, **(env or {})})

    def run_together(
        self, runs: int, *args: str, env: dict[str, str] | None = None
    ) -> list[inner.InnerRun]:
        procs = [
            inner.start(self.root, *args, env={**self.env, **(env or {})}) for _ in range(runs)
        ]
        return [inner.finish(self.root, proc) for proc in procs]

    def catalog(self, database: str, like: str = "%") -> list[str]:
        """Schemas (other than the system's) in ``database``."""
        with self.server.connect(database) as conn:
            rows = conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%%'"
                " AND nspname <> 'information_schema' AND nspname LIKE %s ORDER BY 1",
                (like,),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def public_tables(self, database: str) -> int:
        with self.server.connect(database) as conn:
            row = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            found = row.fetchone()
        return int(str(found[0])) if found else -1

    def databases_like(self, like: str) -> list[str]:
        with self.server.connect() as conn:
            rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (like,))
            return sorted(str(r[0]) for r in rows)

    @property
    def project(self) -> str:
        return naming.project_key(str(self.root.resolve()))

    def templates(self) -> dict[str, dict[str, object]]:
        """The template databases runs of this project built: name → comment."""
        with self.server.connect() as conn:
            rows = conn.execute(
                "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database"
                " WHERE datname LIKE %s",
                (naming.TEMPLATE_LIKE,),
            ).fetchall()
        found = {}
        for name, comment in rows:
            data = json.loads(str(comment)) if comment else {}
            if data.get("project") == self.project:
                found[str(name)] = data
        return found

    def drop_databases(self) -> None:
        with self.server.connect() as conn:
            # A worker database's name part may be shortened, never below the token.
            prefix = self.name.removesuffix("_shop")
            for name in [*self.databases_like(f"test\\_{prefix}%"), *self.templates()]:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


def make(
    tmp_path: Path, server: Server, *, recorder: bool = True, database_mode: bool = False
) -> DjangoProject:
    root = tmp_path / "djangoshop"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    if recorder:
        (root / "tests" / "conftest.py").write_text(RECORDER_CONFTEST)
    name = f"shoalt_{token()}_shop"
    if database_mode:
        pyproject = root / "pyproject.toml"
        pyproject.write_text(pyproject.read_text() + '\n[tool.shoal]\ndjango_mode = "database"\n')
        # Templates are named by the migrations' fingerprint: a file of its own in each
        # migrations package gives this project templates no other test shares or drops.
        for app in ("catalog", "ledger"):
            (root / app / "migrations" / "shoal_test_token.txt").write_text(name)
    url = conninfo.with_params(server.admin_url, dbname=name)
    env = {"SHOP_DATABASE_URL": url}
    return DjangoProject(root=root, server=server, name=name, env=env)
