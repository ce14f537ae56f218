"""``shoal pool warm | status | clear``, and the pool in ``shoal ps`` and ``shoal sweep``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from shoal import naming
from shoal.cli.pool import pool_group
from shoal.cli.ps import ps_command
from shoal.cli.sweep import sweep_command
from tests.cli.conftest import Project
from tests.conftest import Databases, Server

SCHEMA_SQL = "CREATE TABLE items (id serial PRIMARY KEY, name text);\n"


@pytest.fixture
def pooled(project: Project, server: Server, databases: Databases) -> tuple[Path, str]:
    """A project whose database ``app`` is set up from ``schema.sql``: (root, URL)."""
    url = server.url(databases.new("clipool"))
    root = project({"app": url})
    with (root / "pyproject.toml").open("a") as fh:
        fh.write('setup = "sql:schema.sql"\n')
    (root / "schema.sql").write_text(SCHEMA_SQL)
    return root, url


def invoke(*args: str) -> Result:
    result = CliRunner().invoke(pool_group, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def status() -> dict[str, Any]:
    result = invoke("status", "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)["databases"]
    assert isinstance(row, dict)
    return row


def test_warm_status_ps_clear(pooled: tuple[Path, str]) -> None:
    result = invoke("warm", "--size", "2")
    assert result.exit_code == 0, result.output
    assert "app: fingerprint" in result.output
    assert "built 2, ready 2" in result.output
    row = status()
    assert (row["ready"], row["stale"], row["building"]) == (2, 0, 0)
    assert len(row["fingerprint"]) == 64
    again = invoke("warm", "--size", "2")
    assert "built 0, ready 2" in again.output
    assert invoke("warm", "--size", "2", "--quiet").output == ""

    shown = CliRunner().invoke(ps_command, ["--json"])
    assert shown.exit_code == 0, shown.output
    counts = json.loads(shown.output)["pool"]
    assert len(counts) == 1, counts
    (count,) = counts
    assert count["database"] == "app"
    assert count["fingerprint"] == row["fingerprint"][: naming.POOL_FINGERPRINT_CHARS]
    assert count["ready"] == 2
    table = CliRunner().invoke(ps_command, [])
    assert "Pool database" in table.output

    cleared = invoke("clear")
    assert cleared.exit_code == 0, cleared.output
    assert "app: dropped 2 pool schemas" in cleared.output
    assert status()["ready"] == 0


def test_sweep_drops_the_pool_of_a_changed_setup(pooled: tuple[Path, str]) -> None:
    root, _ = pooled
    assert invoke("warm", "--size", "1").exit_code == 0
    old = status()["fingerprint"]
    (root / "schema.sql").write_text(SCHEMA_SQL + "CREATE TABLE more (id int);\n")
    row = status()
    assert row["fingerprint"] != old
    assert (row["ready"], row["stale"]) == (0, 1)
    result = CliRunner().invoke(sweep_command, ["--json", "--grace", "0"])
    assert result.exit_code == 0, result.output
    dropped = json.loads(result.output)["databases"]["app"]["dropped"]
    assert len(dropped) == 1
    parsed = naming.parse_pool_schema(dropped[0])
    assert parsed is not None
    assert naming.fingerprint_matches(parsed, old)
    assert status()["stale"] == 0


def test_no_fingerprint_no_pool(project: Project, server: Server, databases: Databases) -> None:
    project({"app": server.url(databases.new("clinopool"))})
    result = invoke("warm")
    assert result.exit_code == 0, result.output
    assert "app: no setup fingerprint, no pool" in result.output
    assert status()["fingerprint"] is None


def test_the_background_entry_point_warms_without_registration(pooled: tuple[Path, str]) -> None:
    root, _ = pooled
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOAL_", "PG"))}
    env["SHOAL_POOL_SIZE"] = "1"
    if os.environ.get("SHOAL_HOME"):
        env["SHOAL_HOME"] = os.environ["SHOAL_HOME"]
    done = subprocess.run(
        [sys.executable, "-m", "shoal.cli.warm", "warm", "--quiet"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr == ""  # no runpy warning either
    assert status()["ready"] == 1


def test_two_projects_sharing_a_database_keep_their_pools_apart(
    tmp_path: Path, pooled: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    mine, url = pooled
    other = tmp_path.parent / f"{tmp_path.name}_other"
    other.mkdir()
    (other / "pyproject.toml").write_text(
        f'[tool.shoal.databases.app]\nurl = {json.dumps(url)}\nsetup = "sql:schema.sql"\n'
    )
    (other / "schema.sql").write_text("CREATE TABLE others (id int);\n")
    monkeypatch.chdir(other)
    assert invoke("warm", "--size", "1").exit_code == 0
    theirs = status()["fingerprint"]
    monkeypatch.chdir(mine)
    assert invoke("warm", "--size", "1").exit_code == 0

    # This project's clear and sweep leave the other project's pool alone...
    cleared = invoke("clear")
    assert "app: dropped 1 pool schema, left 1" in cleared.output
    swept = CliRunner().invoke(sweep_command, ["--json", "--grace", "0"])
    skipped = json.loads(swept.output)["databases"]["app"]["skipped"]
    assert [s["reason"] for s in skipped if s["schema"].startswith("shoalpool_")] == [
        "pool_foreign"
    ]
    monkeypatch.chdir(other)
    assert status()["ready"] == 1
    assert status()["fingerprint"] == theirs
    # ...until it has gone unclaimed for longer than pool_foreign_days.
    monkeypatch.chdir(mine)
    monkeypatch.setenv("SHOAL_POOL_FOREIGN_DAYS", "0")
    swept = CliRunner().invoke(sweep_command, ["--json", "--grace", "0"])
    assert any(
        s.startswith("shoalpool_") for s in json.loads(swept.output)["databases"]["app"]["dropped"]
    )
    monkeypatch.chdir(other)
    assert status()["ready"] == 0
