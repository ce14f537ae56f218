"""`shoal pool warm | status | clear` on a Django project with no [tool.shoal]: the warm
pools of migrated schemas in Django's test databases, built through the refill's path
and claimed by the next run."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal import naming
from tests.conftest import Server
from tests.django.project import DjangoProject, make
from tests.django.test_fingerprint import pooled, settled
from tests.plugin import inner

DJANGO_POOLS = ("django:default", "django:ledger")


@pytest.fixture
def shop_any(tmp_path: Path, server: Server) -> Iterator[DjangoProject]:
    project = make(tmp_path, server)
    yield project
    project.drop_databases()


def shoal(shop: DjangoProject, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        cwd=shop.root,
        env=inner.clean_env(**shop.env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def django_rows(shop: DjangoProject) -> dict[str, dict[str, Any]]:
    done = shoal(shop, "pool", "status", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(done.stdout)["databases"]
    return {row["database"]: row for row in rows if row["database"] in DJANGO_POOLS}


def test_warm_status_claim_clear(shop_any: DjangoProject) -> None:
    shop = shop_any
    warmed = shoal(shop, "pool", "warm", "--size", "2")
    assert warmed.returncode == 0, warmed.stdout + warmed.stderr
    for name in DJANGO_POOLS:
        assert f"{name}: fingerprint " in warmed.stdout, warmed.stdout
    assert warmed.stdout.count("built 2, ready 2") == 2, warmed.stdout
    for database in shop.test_databases:
        assert len(shop.catalog(database, naming.POOL_READY_LIKE)) == 2
        assert shop.public_tables(database) == 0  # migrated inside the pool schemas only

    rows = django_rows(shop)
    assert set(rows) == set(DJANGO_POOLS), rows
    for row in rows.values():
        assert (row["ready"], row["stale"], row["building"]) == (2, 0, 0), row
        assert len(row["fingerprint"]) == 64, row
        (count,) = row["by_fingerprint"]
        assert count["current"] is True, row
        assert count["ready"] == 2, row
    text = shoal(shop, "pool", "status")
    assert "django:default" in text.stdout, text.stdout

    # A run claims what `warm` built: its fingerprint is the plugin's.
    run = inner.run(shop.root, "-n", "2", "-k", "entries", env={**shop.env, "SHOAL_POOL_SIZE": "2"})
    assert run.returncode == 0, run.output[-3000:]
    assert pooled(run, shop) == [True] * 4, inner.read_records(shop.root)  # 2 workers x 2
    settled(shop, 2, run)  # the run's own refill, done

    cleared = shoal(shop, "pool", "clear")
    assert cleared.returncode == 0, cleared.stdout + cleared.stderr
    assert "django:default: dropped 2 pool schemas" in cleared.stdout, cleared.stdout
    for database in shop.test_databases:
        assert shop.catalog(database, naming.POOL_READY_LIKE) == []
    assert all(row["ready"] == 0 for row in django_rows(shop).values())


def test_clear_drops_the_projects_templates(tmp_path: Path, embedded: Server) -> None:
    shop = make(tmp_path, embedded, database_mode=True)
    try:
        run = inner.run(shop.root, "-n", "0", "-k", "entries", env=shop.env)
        assert run.returncode == 0, run.output[-3000:]
        assert len(shop.templates()) == 2
        cleared = shoal(shop, "pool", "clear")
        assert cleared.returncode == 0, cleared.stdout + cleared.stderr
        assert "dropped 2 template databases" in cleared.stdout, cleared.stdout
        assert shop.templates() == {}
    finally:
        shop.drop_databases()
