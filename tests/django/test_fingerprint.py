"""The warm pool of migrated schemas: claimed when the migrations are the same, never
claimed once a migration changed (the fingerprint changed with it)."""

from __future__ import annotations

import json
import time

from shoal import naming
from tests.django.project import DjangoProject
from tests.plugin import inner

MIGRATION = """
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]
    operations = [
        migrations.AddField("product", "colour", models.CharField(max_length=20, default="")),
    ]
"""


def pool(shop: DjangoProject) -> set[str]:
    return set(shop.catalog(shop.test_databases[0], naming.POOL_READY_LIKE))


def refill_log(run: inner.InnerRun) -> str:
    """The log of the refill the run started, for a message when it did not fill the pool."""
    from shoal.config import load_settings
    from shoal.embedded import default_home

    home = load_settings().home or default_home()
    for line in run.output.splitlines():
        if line.startswith("shoal: namespace "):
            token = line.split()[2]
            path = home / "logs" / naming.pool_log_filename(token)
            return path.read_text() if path.exists() else f"no refill log {path}"
    return "no namespace in the run's output"


def settled(shop: DjangoProject, minimum: int, run: inner.InnerRun) -> set[str]:
    """The ready pool once the background refills are done."""
    deadline = time.monotonic() + 120
    while True:
        database = shop.test_databases[0]
        building = shop.catalog(database, naming.POOL_BUILD_LIKE)
        with shop.server.connect(database) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s",
                ("pytest\\_%\\_pool%",),
            ).fetchone()
        ready = pool(shop)
        if len(ready) >= minimum and not building and row is not None and row[0] == 0:
            return ready
        assert time.monotonic() < deadline, (ready, building, refill_log(run))
        time.sleep(0.25)


def pooled(run: inner.InnerRun, shop: DjangoProject) -> list[bool]:
    del run
    owners = [json.loads(str(r["owner"])) for r in inner.read_records(shop.root)]
    return ["pooled" in o for o in owners]


def fresh_records(shop: DjangoProject) -> None:
    for path in (shop.root / ".records").glob("*.jsonl"):
        path.unlink()


def test_claimed_when_unchanged_never_after_a_migration_changed(shop: DjangoProject) -> None:
    env = {"SHOAL_POOL_SIZE": "2"}
    first = inner.run(shop.root, "-n", "0", "-k", "stock", env={**shop.env, **env})
    assert first.returncode == 0, first.output[-3000:]
    assert pooled(first, shop) == [False]  # a cold pool: built in place
    old = settled(shop, 2, first)
    fingerprints = {naming.parse_pool_schema(s).fingerprint for s in old}  # type: ignore[union-attr]
    assert len(fingerprints) == 1

    fresh_records(shop)
    second = inner.run(shop.root, "-n", "0", "-k", "stock", env={**shop.env, **env})
    assert second.returncode == 0, second.output[-3000:]
    assert pooled(second, shop) == [True]  # migrated schemas, migrate a no-op
    old = settled(shop, 2, second)

    (shop.root / "catalog" / "migrations" / "0002_colour.py").write_text(MIGRATION)
    models = shop.root / "catalog" / "models.py"
    models.write_text(
        models.read_text().replace(
            "    price_cents = models.IntegerField()\n",
            "    price_cents = models.IntegerField()\n"
            '    colour = models.CharField(max_length=20, default="")\n',
            1,
        )
    )
    fresh_records(shop)
    third = inner.run(shop.root, "-n", "0", "-k", "stock", env={**shop.env, **env})
    assert third.returncode == 0, third.output[-3000:]
    assert pooled(third, shop)[0] is False  # default: built in place, with the new column
    new = settled(shop, 4, third) - old
    assert old <= pool(shop)  # none of the old fingerprint's schemas was claimed
    new_fingerprints = {naming.parse_pool_schema(s).fingerprint for s in new}  # type: ignore[union-attr]
    assert new_fingerprints
    assert new_fingerprints.isdisjoint(fingerprints)
