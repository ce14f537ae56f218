"""Every bad input ends in one clear usage error naming key, value, source and fix,
before anything is created."""

from __future__ import annotations

import time
from pathlib import Path
from typing import cast

import pytest

from tests.conftest import Databases, Server
from tests.plugin import inner

TRIVIAL_TEST = "def test_nothing(shoal_databases):\n    pass\n"
USAGE_ERROR = 4  # pytest's exit code for usage errors


def worker_schemas(server: Server, database: str) -> list[str]:
    with server.connect(database) as conn:
        rows = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'test\\_%'")
        return [cast(str, r[0]) for r in rows]


@pytest.fixture
def scratch(embedded: Server, embedded_databases: Databases) -> tuple[Server, str]:
    return embedded, embedded_databases.new("bad")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("my_debug", "underscore"),
        ("my-debug", "hyphen"),
        ("MyDebug", "capital"),
        ("a" * 33, "33 characters"),
        ("", "empty"),
        ("débug", "non-ASCII"),
    ],
)
def test_invalid_forced_namespace(
    tmp_path: Path, scratch: tuple[Server, str], value: str, reason: str
) -> None:
    server, database = scratch
    project = inner.write_project(
        tmp_path, {"app": {"url": server.url(database)}}, {"test_x.py": TRIVIAL_TEST}
    )
    result = inner.run(project, env={"SHOAL_NAMESPACE_FORCE": value})
    assert result.returncode == USAGE_ERROR, result.output
    assert "namespace_force" in result.stderr
    assert repr(value) in result.stderr
    assert "environment SHOAL_NAMESPACE_FORCE" in result.stderr
    assert reason in result.stderr
    assert "a-z and 0-9" in result.stderr
    assert "Traceback" not in result.output
    assert worker_schemas(server, database) == []


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("yamlx:schema.yaml", "unknown setup kind 'yamlx'"),
        ("not a spec", "unknown setup kind"),
        ("sql:missing.sql", "does not exist"),
        ("alembic:missing.ini", "does not exist"),
        ("nosuch.module_xyz:metadata", "cannot be imported"),
        ("recorder:nothing_here", "has no attribute"),
    ],
)
def test_bad_setup_hook(
    tmp_path: Path, scratch: tuple[Server, str], setup: str, expected: str
) -> None:
    server, database = scratch
    project = inner.write_project(
        tmp_path,
        {"app": {"url": server.url(database), "setup": setup}},
        {"test_x.py": TRIVIAL_TEST},
    )
    result = inner.run(project)
    assert result.returncode == USAGE_ERROR, result.output
    assert "databases.app.setup" in result.stderr
    assert repr(setup) in result.stderr
    assert "pyproject.toml [tool.shoal]" in result.stderr
    assert expected in result.stderr
    assert worker_schemas(server, database) == []


def test_unreachable_url_fails_fast_with_the_password_masked(tmp_path: Path) -> None:
    url = "postgresql://bob:hunter2@127.0.0.1:1/nowhere"
    project = inner.write_project(tmp_path, {"app": {"url": url}}, {"test_x.py": TRIVIAL_TEST})
    started = time.monotonic()
    result = inner.run(project)
    assert time.monotonic() - started < 15
    assert result.returncode == USAGE_ERROR, result.output
    assert "databases.app.url" in result.stderr
    assert "bob:***@127.0.0.1:1" in result.stderr
    assert "hunter2" not in result.output


def test_unset_url_variable_is_named(tmp_path: Path) -> None:
    project = inner.write_project(
        tmp_path, {"app": {"url": "env:SHOAL_TEST_NOT_SET_ANYWHERE"}}, {"test_x.py": TRIVIAL_TEST}
    )
    result = inner.run(project)
    assert result.returncode == USAGE_ERROR, result.output
    assert "SHOAL_TEST_NOT_SET_ANYWHERE is not set" in result.stderr


def test_tail_schema_holding_tables_is_refused(tmp_path: Path, scratch: tuple[Server, str]) -> None:
    server, database = scratch
    with server.connect(database) as conn:
        conn.execute("CREATE TABLE public.alembic_version (version_num text)")
        conn.execute("CREATE TABLE public.customers (id int)")
    project = inner.write_project(
        tmp_path,
        {"app": {"url": server.url(database)}},
        {"test_x.py": TRIVIAL_TEST},
        shoal={"search_path_tail": ["public"]},
    )
    result = inner.run(project)
    assert result.returncode == USAGE_ERROR, result.output
    assert "public: alembic_version, customers (2 objects)" in result.stderr
    assert "dedicated test database" in result.stderr
    assert worker_schemas(server, database) == []


def test_empty_tail_schema_is_allowed(tmp_path: Path, scratch: tuple[Server, str]) -> None:
    server, database = scratch
    test = (
        "def test_tail(shoal_databases, shoal_schema):\n"
        "    with shoal_databases['app'].connect() as conn:\n"
        "        path = conn.execute('select current_schemas(false)').fetchone()[0]\n"
        "    assert path == [shoal_schema, 'public']\n"
    )
    project = inner.write_project(
        tmp_path,
        {"app": {"url": server.url(database)}},
        {"test_x.py": test},
        shoal={"search_path_tail": ["public"]},
    )
    result = inner.run(project)
    assert result.returncode == 0, result.output


@pytest.mark.parametrize("key", ["Bad-Name", "1tenant", "x" * 64])
def test_database_name_postgres_would_reject(tmp_path: Path, key: str) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text(f'[tool.shoal.databases."{key}"]\n')
    (project / "test_x.py").write_text(TRIVIAL_TEST)
    result = inner.run(project)
    assert result.returncode == USAGE_ERROR, result.output
    assert f"databases.{key}" in result.stderr
    assert "pyproject.toml [tool.shoal]" in result.stderr


FAILING_SETUP = """
def build(conn):
    conn.execute("SELECT uuid_generate_v4()")
"""

MANY_TESTS = "\n".join(f"def test_{n}():\n    pass\n" for n in range(30))


def test_a_failing_setup_is_one_error_per_worker_not_one_per_test(
    tmp_path: Path, scratch: tuple[Server, str]
) -> None:
    server, database = scratch
    project = inner.write_project(
        tmp_path,
        {"app": {"url": server.url(database), "setup": "failing:build"}},
        {"failing.py": FAILING_SETUP, "test_many.py": MANY_TESTS},
    )
    result = inner.run(project, "-n", "2")
    assert result.returncode == 1, result.output
    reported = result.output.count("setup 'failing:build' of database 'app' failed")
    assert 1 <= reported <= 2, result.output  # once per worker that provisioned
    assert "uuid_generate_v4() does not exist" in result.output
    assert "Traceback" not in result.output
    assert " passed" not in result.output.splitlines()[-1]
    assert len(result.output.splitlines()) < 80


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("extension", "databases.app.extensions = 'no_such_extension' (from pyproject.toml"),
        ("home", "cannot use /proc/shoal-nope for the embedded server's data"),
        ("databases json", "databases = '{not json' (from environment SHOAL_DATABASES)"),
        ("long setup path", "databases.app.setup = 'sql:"),
    ],
)
def test_mistakes_that_used_to_end_in_tracebacks(
    tmp_path: Path, scratch: tuple[Server, str], case: str, expected: str
) -> None:
    server, database = scratch
    app: dict[str, object] = {"url": server.url(database)}
    env: dict[str, str] = {}
    if case == "extension":
        app["extensions"] = ["no_such_extension"]
    elif case == "home":
        app = {}  # the embedded server, in a home that cannot be made
        env["SHOAL_HOME"] = "/proc/shoal-nope"
    elif case == "databases json":
        env["SHOAL_DATABASES"] = "{not json"
    else:
        app["setup"] = "sql:" + "x" * 100_000 + ".sql"
    project = inner.write_project(tmp_path, {"app": app}, {"test_x.py": TRIVIAL_TEST})
    result = inner.run(project, env=env)
    assert result.returncode == USAGE_ERROR, result.output
    assert expected in result.stderr
    assert "Traceback" not in result.output
    assert "INTERNALERROR" not in result.output
    assert len(result.stderr) < 2000
    with server.connect(database) as conn:
        leftovers = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'shoal%'")
        assert leftovers.fetchall() == []
