"""A run killed mid-way: `shoal sweep --grace 0` drops its schemas in Django's test
databases and nothing of the three runs still going, which finish green."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from shoal import naming
from tests.django.project import DjangoProject
from tests.plugin import inner

HELD = """
import os, pathlib, time

import pytest


@pytest.mark.django_db
@pytest.mark.parametrize("n", range(2))
def test_held(n):
    release = pathlib.Path(os.environ["RELEASE"])
    deadline = time.monotonic() + 120
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
"""


def worker_schemas(shop: DjangoProject) -> dict[str, set[str]]:
    return {db: set(shop.catalog(db, naming.WORKER_SCHEMA_LIKE)) for db in shop.test_databases}


def test_sigkill_one_of_four_then_sweep(shop: DjangoProject, tmp_path: Path) -> None:
    (shop.root / "tests" / "test_held.py").write_text(HELD)
    env = {"RELEASE": str(tmp_path / "release")}
    procs = [shop.start("-n", "2", "-k", "held", env=env) for _ in range(4)]
    deadline = time.monotonic() + 150
    while len(inner.read_records(shop.root)) < 4 * 2:  # every worker bound and migrated
        assert time.monotonic() < deadline, [p.poll() for p in procs]  # type: ignore[attr-defined]
        time.sleep(0.2)
    victim, survivors = procs[0], procs[1:]
    os.killpg(victim.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    victim.wait()  # type: ignore[attr-defined]
    before = worker_schemas(shop)
    theirs = {s for s in before[shop.test_databases[0]] if s.startswith(f"test_p{victim.pid}t")}  # type: ignore[attr-defined]
    assert len(theirs) == 2, before
    swept = sweep(shop, tmp_path)
    after = worker_schemas(shop)
    for database in shop.test_databases:
        assert after[database] == before[database] - theirs, (database, swept)
        assert len(after[database]) == 3 * 2

    (tmp_path / "release").touch()
    runs = [inner.finish(shop.root, p) for p in survivors]  # type: ignore[arg-type]
    assert [r.returncode for r in runs] == [0, 0, 0], [r.output[-3000:] for r in runs]
    assert worker_schemas(shop) == {db: set() for db in shop.test_databases}


def sweep(shop: DjangoProject, tmp_path: Path) -> dict[str, object]:
    # Wait until the server has seen the killed run's connections go.
    deadline = time.monotonic() + 30
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
        dropped = [
            s
            for name, outcome in dict(result["databases"]).items()  # type: ignore[call-overload]
            if name.startswith("django:")
            for s in outcome["dropped"]
        ]
        if len(dropped) >= 4 or time.monotonic() > deadline:
            return result
        time.sleep(0.5)
