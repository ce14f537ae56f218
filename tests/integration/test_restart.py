"""A server restart drops every lease while the runs go on: a live run must not look dead."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

from shoal import naming
from shoal.embedded import EmbeddedServer
from shoal.pg import schemas
from shoal.pg.live import owner_alive
from shoal.pg.sweep import Found, decide, sweep
from tests.conftest import gone, token
from tests.plugin import inner

# The test waits for the outer test's signal while the server restarts, then uses it.
SLOW_TEST = """
import os, pathlib, time

def test_slow_and_quiet(shoal_databases, shoal_schema):
    here = pathlib.Path(os.environ["RECORD_DIR"])
    (here / "schema").write_text(shoal_schema)
    deadline = time.time() + 120
    while not (here / "go").exists():
        assert time.time() < deadline
        time.sleep(0.1)
    with shoal_databases["app"].connect() as conn:
        conn.execute("INSERT INTO items VALUES (1)")
        assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 1
"""


def test_a_run_survives_a_restart_and_a_sweep_with_no_grace(tmp_path: Path) -> None:
    # A server of its own, to restart; not under pytest's tmp_path: as root the server
    # runs as its own user, which must reach its home.
    home = Path(tempfile.mkdtemp(prefix="shoal-test-restart-"))
    server = EmbeddedServer(home)
    server.ensure_running()
    database = f"shoalt_{token()}_restart"
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    url = server.url(database)
    project = inner.write_project(
        tmp_path / "project",
        {"app": {"url": url, "setup": "sql:schema.sql"}},
        {"schema.sql": "CREATE TABLE items (id int);\n", "test_slow.py": SLOW_TEST},
    )
    records = project / ".records"
    try:
        run = inner.start(project, "-n", "0")
        deadline = time.monotonic() + 120
        while not (records / "schema").exists():
            assert run.poll() is None, inner.finish(project, run).output
            assert time.monotonic() < deadline
            time.sleep(0.1)
        schema = (records / "schema").read_text()

        server.stop()
        server.ensure_running()
        result = sweep({"app": url}, grace_s=0, timeout=5)
        skipped = result.databases["app"].skipped
        assert schema not in result.databases["app"].dropped
        assert any(s["schema"] == schema for s in skipped), skipped

        (records / "go").touch()
        finished = inner.finish(project, run)
        assert finished.returncode == 0, finished.output
        with psycopg.connect(url, autocommit=True) as conn:
            assert not schemas.schema_exists(conn, schema)  # the run dropped it itself
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def test_no_lease_seen_just_after_a_restart_is_not_proof_of_death() -> None:
    now = datetime.now(UTC)
    namespace = "p1t2r0123abcd"
    name = naming.schema_name(namespace, "gw0")
    comment = gone(schemas.owner_comment(namespace, "gw0", now=now - timedelta(hours=1)))
    found = Found("app", name, comment)
    just_restarted = decide(found, set(), True, now, 120, server_started=now)
    assert (just_restarted.drop, just_restarted.reason) == (False, "server_restarted")
    long_up = decide(found, set(), True, now, 120, server_started=now - timedelta(hours=2))
    assert long_up.drop
    alive = decide(found, set(), True, now, 120, alive=lambda owner: True)
    assert (alive.drop, alive.reason) == (False, "owner_alive")


def test_a_killed_process_not_yet_reaped_is_not_an_owner_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = {
            "host": socket.gethostname(),
            "pid": child.pid,
            "started": psutil.Process(child.pid).create_time(),
        }
        assert owner_alive(owner) is True
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert owner_alive(owner) is False  # a zombie: dead, though its pid is still there
    finally:
        child.kill()
        child.wait()
