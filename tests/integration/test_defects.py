"""Defects found on the way, each pinned by a test: they must not come back."""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from shoal import embedded, naming
from shoal.embedded import EmbeddedServer
from shoal.errors import first_line
from shoal.pg import schemas
from shoal.pg.live import probe_clusters
from shoal.pg.sweep import Found, _Dropper, decide
from tests.conftest import Server


def test_an_owner_comment_with_a_naive_timestamp_is_kept_not_a_crash() -> None:
    namespace = "p1t2r0123abcd"
    comment = json.dumps({"shoal": 1, "namespace": namespace, "created": "2020-01-01T00:00:00"})
    found = Found("app", naming.schema_name(namespace, "gw0"), comment)
    decision = decide(found, set(), True, datetime.now(UTC), 0)
    assert (decision.drop, decision.reason) == (False, "not_shoal")


def test_the_sweep_takes_its_slots_as_configured(server: Server) -> None:
    dropper = _Dropper(namespace="p1t2r0123abcd", ddl_slots=3, timeout=5)
    try:
        assert dropper.lease(server.admin_url).slot_count == 3
    finally:
        dropper.close()


def test_a_probe_of_an_unreachable_server_keeps_its_password_out_of_the_error() -> None:
    (probe,) = probe_clusters(["postgresql://bob:hunter2@127.0.0.1:1/app"], timeout=2)
    assert not probe.reachable
    assert probe.error is not None
    assert "hunter2" not in probe.error


def test_the_errors_the_sweep_records_are_masked_and_never_empty() -> None:
    # Every failure the sweep (and the probe) records goes through first_line.
    error = psycopg.OperationalError("connection to postgresql://bob:hunter2@db/app failed\nmore")
    assert first_line(error) == "connection to postgresql://bob:***@db/app failed"
    assert first_line(psycopg.OperationalError("")) == "OperationalError"


def test_the_embedded_servers_own_connection_gives_up_after_its_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A socket that accepts connections into its backlog and never answers: libpq waits
    # for the server's reply until the connect timeout.
    home = Path(tempfile.mkdtemp(prefix="shoal-test-silent-"))
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        (home / "run").mkdir()
        silent.bind(str(home / "run" / ".s.PGSQL.5432"))
        silent.listen(8)
        monkeypatch.setattr(embedded, "CONNECT_TIMEOUT_S", 2)
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            EmbeddedServer(home).ensure_database("shoalt_silent")
        assert time.monotonic() - started < 10
    finally:
        silent.close()
        shutil.rmtree(home, ignore_errors=True)


def test_ownerless_timestamps_parse_only_when_aware() -> None:
    assert schemas.created_at({"created": "2020-01-01T00:00:00"}) is None
    aware = datetime.now(UTC) - timedelta(hours=1)
    assert schemas.created_at({"created": aware.isoformat()}) == aware
