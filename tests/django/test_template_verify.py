"""Database mode's template builds are checked as schema builds are: a migration whose
connection writes into another database fails the build naming what it made there; one
that creates into another schema of the template is the template's own (every clone
carries it); a build that leaves the template empty fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql

from shoal.errors import SetupError
from shoal.pg import verify
from tests.conftest import Databases, Server, token
from tests.django.project import DjangoProject, make
from tests.plugin import inner

LEAK = """
import os

import psycopg
from django.db import migrations


def leak(apps, schema_editor):
    with psycopg.connect(os.environ["LEAK_URL"], autocommit=True) as conn:
        conn.execute(f"CREATE TABLE public.{os.environ['LEAK_TABLE']} (id int)")


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]
    operations = [migrations.RunPython(leak)]
"""
OTHER_SCHEMA = """
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]
    operations = [
        migrations.RunSQL("CREATE SCHEMA reporting; CREATE TABLE reporting.totals (id int)")
    ]
"""


@pytest.fixture
def shop_db(tmp_path: Path, server: Server) -> Iterator[DjangoProject]:
    project = make(tmp_path, server, database_mode=True)
    yield project
    project.drop_databases()


def test_a_migration_writing_into_another_database_fails_the_build(
    shop_db: DjangoProject,
) -> None:
    shop = shop_db
    (shop.root / "catalog" / "migrations" / "0002_leak.py").write_text(LEAK)
    table = f"shoalt_{token()}_leak"
    control = shop.server.url("postgres")
    try:
        env = {**shop.env, "LEAK_URL": control, "LEAK_TABLE": table}
        result = inner.run(shop.root, "-n", "2", "-k", "entries", env=env)
        assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.output[-3000:]
        assert "created objects in database postgres, not in the template database " in (
            result.output
        ), result.output[-3000:]
        assert f"table public.{table}" in result.output, result.output[-3000:]
        assert result.records == []
        # Nothing published: the half-built template is gone, what leaked is left.
        assert shop.templates() == {}
        with shop.server.connect("postgres") as conn:
            assert conn.execute("SELECT to_regclass(%s)", (f"public.{table}",)).fetchone() == (
                table,
            )
    finally:
        with shop.server.connect("postgres") as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS public.{}").format(sql.Identifier(table)))


def test_a_migration_creating_into_another_schema_is_the_templates_own(
    shop_db: DjangoProject,
) -> None:
    shop = shop_db
    (shop.root / "catalog" / "migrations" / "0002_reporting.py").write_text(OTHER_SCHEMA)
    result = inner.run(shop.root, "-n", "2", "-k", "entries", env=shop.env)
    assert result.returncode == 0, result.output[-3000:]
    templates = shop.templates()
    assert {t["template"] for t in templates.values()} == {"ready"}, templates
    shapes = [t["shape"] for t in templates.values()]
    assert all(isinstance(s, dict) and int(s["objects"]) > 0 for s in shapes), shapes
    with_reporting = []
    for name in templates:
        with shop.server.connect(name) as conn:
            row = conn.execute("SELECT to_regclass('reporting.totals')").fetchone()
        with_reporting += [name] if row and row[0] else []
    assert len(with_reporting) == 1, with_reporting  # the catalog's template, not the ledger's


def test_an_empty_template_is_refused(databases: Databases) -> None:
    template = databases.new("tpl")
    with databases.server.connect() as control, databases.server.connect(template) as conn:
        before = verify.outside(control)
        with pytest.raises(SetupError, match=f"built nothing in the template database {template}"):
            verify.check_database(
                conn,
                template=template,
                elsewhere=control,
                elsewhere_name="postgres",
                database="default",
                spec="django:default",
                before=before,
            )
        conn.execute("CREATE SCHEMA reporting")
        conn.execute("CREATE TABLE reporting.totals (id int)")
        shape = verify.check_database(
            conn,
            template=template,
            elsewhere=control,
            elsewhere_name="postgres",
            database="default",
            spec="django:default",
            before=before,
        )
        assert shape.objects >= 1
