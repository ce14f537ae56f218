"""A Django project that also configures `[tool.shoal.databases.default]`: the exported
PGOPTIONS must not reach Django's test database, where Django's own connections carry
the worker's schema in OPTIONS (this used to fail every run with MigrationSchemaMissing)."""

from __future__ import annotations

from shoal import conninfo, naming
from tests.conftest import Databases
from tests.django.project import DjangoProject
from tests.plugin import inner


def test_green_alone_with_a_configured_database(
    shop: DjangoProject, embedded_databases: Databases
) -> None:
    other = embedded_databases.new("cfg")
    url = conninfo.with_params(shop.server.admin_url, dbname=other)
    pyproject = shop.root / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text() + f'\n[tool.shoal.databases.default]\nurl = "{url}"\n'
    )
    result = inner.run(shop.root, "-n", "0", "-k", "entries", env=shop.env)
    assert result.returncode == 0, result.output[-3000:]
    records = inner.read_records(shop.root)
    assert {r["database"] for r in records} == set(shop.test_databases)
    assert all(naming.parse_schema(str(r["schemas"][0])) for r in records)  # type: ignore[index]
    for database in shop.test_databases:
        assert shop.public_tables(database) == 0
    assert shop.catalog(other, naming.WORKER_SCHEMA_LIKE) == []  # provisioned, then dropped


SQLITE_SETTINGS = """
from shop.settings import *  # noqa: F403

# The catalog on SQLite (in memory, one per worker), the ledger on PostgreSQL.
DATABASES = {**DATABASES, "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
"""


def test_a_sqlite_alias_is_left_alone_and_the_header_says_so(shop: DjangoProject) -> None:
    (shop.root / "shop" / "settings_sqlite.py").write_text(SQLITE_SETTINGS)
    result = inner.run(
        shop.root, "-n", "2", "-k", "entries", "--ds", "shop.settings_sqlite", env=shop.env
    )
    assert result.returncode == 0, result.output[-3000:]
    assert "Django alias 'default' not isolated: engine django.db.backends.sqlite3" in result.output
    assert f"Django alias 'ledger' → test_{shop.name}_ledger" in result.output
    records = inner.read_records(shop.root)
    assert {r["alias"] for r in records} == {"ledger"}  # the recorder skips what is not test_*
    assert all(naming.parse_schema(str(r["schemas"][0])) for r in records)  # type: ignore[index]
    assert shop.public_tables(f"test_{shop.name}_ledger") == 0
