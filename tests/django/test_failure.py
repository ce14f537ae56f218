"""A Django migration that raises: the run fails, the error is printed once (not once per
test, not once per worker), and the tests are skipped, not errored one by one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal import naming
from tests.conftest import Server
from tests.django.project import DjangoProject, make
from tests.plugin import inner

BOOM = """
from django.db import migrations


def boom(apps, schema_editor):
    raise RuntimeError("the boom migration failed on purpose")


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]
    operations = [migrations.RunPython(boom)]
"""
ERROR = "setup 'django:default' of database 'default' failed: RuntimeError: the boom migration"


@pytest.fixture(params=["schema", "database"])
def broken(
    request: pytest.FixtureRequest, tmp_path: Path, embedded: Server
) -> Iterator[DjangoProject]:
    project = make(tmp_path, embedded, database_mode=request.param == "database")
    (project.root / "catalog" / "migrations" / "0002_boom.py").write_text(BOOM)
    yield project
    project.drop_databases()


def test_a_failing_migration_is_reported_once(broken: DjangoProject) -> None:
    result = inner.run(broken.root, "-n", "4", env=broken.env)
    assert result.returncode != 0, result.output[-3000:]
    assert result.output.count(ERROR) == 1, result.output[-5000:]
    assert "Traceback" not in result.output, result.output[-5000:]
    last = result.output.splitlines()[-1]
    assert " passed" not in last, last
    assert " error" not in last, last  # no error per test
    assert result.records == []
    if 'django_mode = "database"' in (broken.root / "pyproject.toml").read_text():
        # Database mode builds the template before any worker starts: the run stops there.
        assert result.returncode == pytest.ExitCode.USAGE_ERROR
        assert broken.templates() == {}
    else:
        assert result.returncode == pytest.ExitCode.TESTS_FAILED
        assert "skipped" in last, last
        assert "workers gw0, gw1, gw2, gw3: " + ERROR in result.output
        for database in broken.test_databases:
            assert broken.catalog(database, naming.WORKER_SCHEMA_LIKE) == []
