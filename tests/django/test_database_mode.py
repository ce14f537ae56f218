"""Django's database mode: a whole database per worker, cloned from a template migrated
once per fingerprint. Four invocations at once stay green; a killed one's databases are
swept and nothing of the others; a role that may not create databases is refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from shoal import conninfo, naming
from tests.conftest import Server, token
from tests.django.project import DjangoProject, make
from tests.django.test_sweep import HELD
from tests.plugin import inner

RUNS = 4


@pytest.fixture
def shop_db(tmp_path: Path, server: Server) -> Iterator[DjangoProject]:
    project = make(tmp_path, server, database_mode=True)
    yield project
    project.drop_databases()


def worker_databases(shop: DjangoProject) -> set[str]:
    """The worker databases of this project's runs on its server."""
    prefix = shop.name.removesuffix("_shop")
    return {
        name
        for name in shop.databases_like(f"test\\_{prefix}%")
        if naming.parse_worker_database(name) is not None
    }


def test_four_at_once_each_worker_in_its_own_database(shop_db: DjangoProject) -> None:
    procs = [shop_db.start("-n", "2", "-k", "entries") for _ in range(RUNS)]
    runs = [inner.finish(shop_db.root, proc) for proc in procs]  # type: ignore[arg-type]
    assert [r.returncode for r in runs] == [0] * RUNS, [r.output[-3000:] for r in runs]
    assert "a database per worker, cloned from shoaltpl_" in runs[0].output
    assert all(": 4 databases provisioned, slowest " in r.output for r in runs), runs[0].output
    records = inner.read_records(shop_db.root)
    assert len(records) == RUNS * 2 * 2  # runs, workers, aliases
    databases = {str(r["database"]) for r in records}
    assert len(databases) == RUNS * 2 * 2  # every worker's every alias a database of its own
    for record in records:
        parsed = naming.parse_worker_database(str(record["database"]))
        label = naming.parse_label(str(record["label"]))
        assert parsed is not None, record
        assert label is not None, record
        assert (parsed.namespace, parsed.worker) == (label.namespace, label.worker)
    # The templates were built once per fingerprint, by one of the four, and are ready.
    templates = shop_db.templates()
    assert len(templates) == 2, templates
    assert {t["template"] for t in templates.values()} == {"ready"}
    assert worker_databases(shop_db) == set()  # every run dropped its own
    # Django's test databases were not made: nothing was put there.
    assert shop_db.databases_like(f"test\\_{shop_db.name}") == []


def test_sigkill_one_of_four_then_sweep_drops_its_databases(
    tmp_path: Path, embedded: Server
) -> None:
    shop = make(tmp_path, embedded, database_mode=True)
    try:
        (shop.root / "tests" / "test_held.py").write_text(HELD)
        env = {"RELEASE": str(tmp_path / "release")}
        procs = [shop.start("-n", "2", "-k", "held", env=env) for _ in range(RUNS)]
        deadline = time.monotonic() + 150
        while len(inner.read_records(shop.root)) < RUNS * 2:  # every worker in its database
            assert time.monotonic() < deadline, [p.poll() for p in procs]  # type: ignore[attr-defined]
            time.sleep(0.2)
        before_kill = worker_databases(shop)
        assert len(before_kill) == RUNS * 2 * 2, before_kill
        listed = ps(shop)
        mine = {d["database"] for d in listed["worker_databases"] if d["database"] in before_kill}
        assert mine == before_kill, listed["worker_databases"]
        live = {n["namespace"] for n in listed["namespaces"] if n["status"] == "live"}
        assert {naming.parse_worker_database(d).namespace for d in mine} <= live  # type: ignore[union-attr]
        victim, survivors = procs[0], procs[1:]
        os.killpg(victim.pid, signal.SIGKILL)  # type: ignore[attr-defined]
        victim.wait()  # type: ignore[attr-defined]
        before = worker_databases(shop)
        theirs = {d for d in before if f"_p{victim.pid}t" in d}  # type: ignore[attr-defined]
        assert len(theirs) == 2 * 2, before  # two workers, two aliases
        swept = sweep(shop, len(theirs))
        assert worker_databases(shop) == before - theirs, swept
        assert len(before - theirs) == (RUNS - 1) * 2 * 2

        (tmp_path / "release").touch()
        runs = [inner.finish(shop.root, p) for p in survivors]  # type: ignore[arg-type]
        assert [r.returncode for r in runs] == [0] * (RUNS - 1), [r.output[-3000:] for r in runs]
        assert worker_databases(shop) == set()
    finally:
        shop.drop_databases()


def ps(shop: DjangoProject) -> dict[str, Any]:
    """`shoal ps --json`: the workers' databases are listed with their namespaces."""
    done = subprocess.run(
        [sys.executable, "-m", "shoal", "ps", "--json"],
        cwd=shop.root,
        env=inner.clean_env(**shop.env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    listed: dict[str, Any] = json.loads(done.stdout)
    return listed


def sweep(shop: DjangoProject, expected: int) -> dict[str, object]:
    """`shoal sweep --grace 0` until it has dropped ``expected`` databases (the server
    takes a moment to see the killed run's connections go)."""
    deadline = time.monotonic() + 30
    dropped: list[str] = []
    while True:
        done = subprocess.run(
            [sys.executable, "-m", "shoal", "sweep", "--grace", "0", "--json"],
            cwd=shop.root,
            env=inner.clean_env(**shop.env),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        result: dict[str, object] = json.loads(done.stdout)
        dropped += [
            name
            for outcome in dict(result["databases"]).values()  # type: ignore[call-overload]
            for name in outcome["dropped"]
            if naming.parse_worker_database(name) is not None
        ]
        if len(dropped) >= expected or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def test_a_role_without_createdb_is_refused(shop_db: DjangoProject) -> None:
    role = f"shoalt_{token()}"
    server = shop_db.server
    with server.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        url = conninfo.with_params(shop_db.env["SHOP_DATABASE_URL"], user=role)
        result = inner.run(shop_db.root, "-n", "2", "-k", "entries", env={"SHOP_DATABASE_URL": url})
        assert result.returncode != 0
        assert result.records == []  # no test ran
        message = next(line for line in result.output.splitlines() if "CREATEDB" in line)
        assert f"role {role!r}" in message, message
        assert conninfo.mask(conninfo.with_params(url, dbname="postgres")) in message, message
        assert "ALTER ROLE" in message, message
        assert 'django_mode = "schema"' in message, message
        assert "django_mode = 'database'" in message, message  # the key and its value
        assert shop_db.templates() == {}  # nothing was created
        assert worker_databases(shop_db) == set()
    finally:
        with server.connect() as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
