"""The embedded server: concurrent starts share one server; `shoal db` manages it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from shoal.cli import cli
from shoal.embedded import EmbeddedServer
from tests.conftest import Server, embedded_server, token

START = (
    "from pathlib import Path; import sys; from shoal.embedded import EmbeddedServer; "
    "s = EmbeddedServer(Path(sys.argv[1])); s.ensure_running(); print(s.status().pid)"
)


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    # Not under pytest's tmp_path: every pytest session that starts resets its root to
    # mode 0700, and as root the server's own user must be able to traverse to the home.
    path = Path(tempfile.mkdtemp(prefix="shoal-test-home-"))
    yield path
    EmbeddedServer(path).stop()
    shutil.rmtree(path, ignore_errors=True)


def test_concurrent_starts_end_up_sharing_one_server(home: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", START, str(home)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    pids = {proc.communicate(timeout=120)[0].strip() for proc in procs}
    assert all(proc.returncode == 0 for proc in procs)
    assert len(pids) == 1
    status = EmbeddedServer(home).status()
    assert status.running
    assert str(status.pid) in pids
    with psycopg.connect(EmbeddedServer(home).url()) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()
    assert version is not None
    assert int(version[0]) >= 180000


def test_db_commands(home: Path) -> None:
    runner = CliRunner()
    up = runner.invoke(cli, ["db", "up", "--home", str(home)])
    assert up.exit_code == 0, up.output
    assert up.output.strip() == EmbeddedServer(home).url()

    status = runner.invoke(cli, ["db", "status", "--home", str(home), "--json"])
    assert status.exit_code == 0, status.output
    data = json.loads(status.output)
    assert data["running"] is True
    assert data["home"] == str(home)

    name = f"shoalt_{token()}"
    url = runner.invoke(cli, ["db", "url", "--home", str(home), name])
    assert url.exit_code == 0, url.output
    with psycopg.connect(url.output.strip()) as conn:
        assert conn.info.dbname == name

    bad = runner.invoke(cli, ["db", "url", "--home", str(home), "Bad-Name"])
    assert bad.exit_code == 2
    assert "DATABASE = 'Bad-Name' (from command line)" in bad.output

    down = runner.invoke(cli, ["db", "down", "--home", str(home)])
    assert (down.exit_code, down.output.strip()) == (0, "stopped")
    assert not EmbeddedServer(home).status().running
    again = runner.invoke(cli, ["db", "down", "--home", str(home)])
    assert again.output.strip() == "not running"


def test_bad_setting_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_DDL_SLOTS", "lots")
    result = CliRunner().invoke(cli, ["db", "status"])
    assert result.exit_code == 2
    assert "ddl_slots = 'lots' (from environment SHOAL_DDL_SLOTS)" in result.output
    assert "Traceback" not in result.output


def test_databases_are_created_once_when_many_ask_at_once(embedded: Server) -> None:
    server = embedded_server()
    name = f"shoalt_{token()}_race"
    try:
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(lambda _: server.ensure_database(name), range(6)))
        with embedded.connect() as conn:
            row = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,))
            assert row.fetchone() == (1,)
    finally:
        with embedded.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
