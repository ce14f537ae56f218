"""`shoal demo` on a small suite: green with shoal, visibly colliding without it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from shoal.cli.demo import demo_command
from tests.conftest import Databases, Server
from tests.plugin import inner

# Both runs meet at a barrier after provisioning, so they always overlap; then each
# checks that it sees only its own rows.
SUITE = """
import os, pathlib, time
import pytest

BARRIER = pathlib.Path(__file__).parent / "barrier"

@pytest.fixture(scope="session", autouse=True)
def meet():
    BARRIER.mkdir(exist_ok=True)
    (BARRIER / str(os.getpid())).touch()
    deadline = time.time() + 60
    while len(list(BARRIER.iterdir())) < 2 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)

@pytest.mark.parametrize("n", range(4))
def test_only_own_rows(n, shoal_databases):
    with shoal_databases["app"].connect() as conn:
        conn.execute("insert into items values (%s)", (os.getpid(),))
        conn.commit()
        time.sleep(0.2)
        assert {r[0] for r in conn.execute("select pid from items")} == {os.getpid()}
"""


@pytest.mark.parametrize("without_shoal", [False, True], ids=["shoal", "without-shoal"])
def test_demo(
    tmp_path: Path, embedded: Server, embedded_databases: Databases, without_shoal: bool
) -> None:
    schema_sql = "create table items (pid int);\n"
    suite = inner.write_project(
        tmp_path / "suite",
        {"app": {"url": embedded.url(embedded_databases.new("demo")), "setup": "sql:schema.sql"}},
        {"schema.sql": schema_sql, "tests/test_rows.py": SUITE},
    )
    args = ["--runs", "2", "--workers", "0", "--suite", str(suite), "--json"]
    result = CliRunner().invoke(demo_command, args + (["--without-shoal"] if without_shoal else []))
    summary = json.loads(result.stdout)
    assert summary["runs"] == 2
    assert summary["schemas_left"] == 0
    assert summary["tables_in_public"] == 0
    if without_shoal:
        assert summary["mode"] == "without-shoal"
        assert summary["failed_tests"] > 0
        assert result.exit_code == 0
    else:
        assert (summary["green"], summary["passed_tests"], summary["failed_tests"]) == (2, 8, 0)
        assert result.exit_code == 0
        assert all(" provisioned, slowest" in line for line in summary["provisioning"])
