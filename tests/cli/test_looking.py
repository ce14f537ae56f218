"""Commands that only look (ps, locks, pool status) never start or write to the embedded server."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import cast

import click
import psycopg
import pytest
from click.testing import CliRunner
from psycopg.conninfo import conninfo_to_dict

from shoal.cli.locks import locks_command
from shoal.cli.pool import pool_group
from shoal.cli.ps import ps_command
from shoal.config import Settings

LOOKING: list[tuple[click.Command, list[str]]] = [
    (ps_command, []),
    (locks_command, []),
    (pool_group, ["status"]),
]
IDS = ["ps", "locks", "pool status"]


def embedded_project(root: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A project whose one database, ``app``, has no URL: it lives on the server in ``home``."""
    for name in list(os.environ):
        if name.startswith("SHOAL_") and name[6:].lower().split("__")[0] in Settings.model_fields:
            monkeypatch.delenv(name)
    settings = f"[tool.shoal]\nhome = {json.dumps(str(home))}\n[tool.shoal.databases.app]\n"
    (root / "pyproject.toml").write_text(settings)
    monkeypatch.chdir(root)


@pytest.mark.parametrize(("command", "args"), LOOKING, ids=IDS)
def test_a_stopped_embedded_server_is_reported_not_started(
    command: click.Command, args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Path(tempfile.mkdtemp(prefix="shoal-test-never-"))
    try:
        embedded_project(tmp_path, home, monkeypatch)
        result = CliRunner().invoke(command, args)
        assert result.exit_code == 0, result.output
        assert "not looked at: app, on the embedded server, which is not running" in result.output
        assert "shoal db up" in result.output
        data = CliRunner().invoke(command, [*args, "--json"])
        assert data.exit_code == 0, data.output
        assert json.loads(data.output)["not_looked_at"] == ["app"]
        assert not (home / "pgdata").exists()  # no initdb, no server
    finally:
        home.rmdir()  # fails if anything was written there


@pytest.mark.parametrize(("command", "args"), LOOKING, ids=IDS)
def test_a_database_not_created_yet_is_reported_not_created(
    command: click.Command,
    args: list[str],
    quiet_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The quiet server's socket lives in <home>/run.
    home = Path(cast(str, conninfo_to_dict(quiet_server)["host"])).parent
    embedded_project(tmp_path, home, monkeypatch)
    result = CliRunner().invoke(command, args)
    assert result.exit_code == 0, result.output
    assert "not looked at: app, not created on the embedded server yet" in result.output
    with psycopg.connect(quiet_server, autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'app'").fetchone()
    assert row is None  # looking created nothing


def test_a_server_that_does_not_answer_is_reported_unreadable_not_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A socket file nobody accepts on: the server runs but refuses, or died uncleanly.
    home = Path(tempfile.mkdtemp(prefix="shoal-test-mute-"))
    try:
        (home / "run").mkdir()
        mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        mute.bind(str(home / "run" / ".s.PGSQL.5432"))  # bound, never listening
        embedded_project(tmp_path, home, monkeypatch)
        result = CliRunner().invoke(ps_command, [])
        assert result.exit_code == 1, result.output
        assert "not looked at" not in result.output
        assert "app" in result.output  # the database it could not read is named
        mute.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
