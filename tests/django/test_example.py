"""The Django example, four invocations at once at -n 2: green with shoal in every mode
pytest-django offers, colliding without it."""

from __future__ import annotations

from shoal import naming
from tests.conftest import settled
from tests.django.project import DjangoProject
from tests.plugin import inner

RUNS = 4
# The tests that commit: the ones a neighbour's writes and flushes break.
COMMITTING = ("-k", "entries")
COLLISIONS = (
    "already exists",
    "is being accessed by other users",
    "just been dropped or renamed",
    "Got an error creating the test database",
    "does not exist",
    "assert",
)


def assert_isolated(shop: DjangoProject, records: list[dict[str, object]]) -> None:
    """Every worker of every run in a schema of its own, labelled, in Django's test databases."""
    schemas = {(str(r["database"]), tuple(r["schemas"])) for r in records}  # type: ignore[arg-type]
    assert {db for db, _ in schemas} == set(shop.test_databases)
    for database, path in schemas:
        assert len(path) == 1, (database, path)
        assert naming.parse_schema(path[0]) is not None, (database, path)
    for record in records:
        label = naming.parse_label(str(record["label"]))
        schema = naming.parse_schema(str(record["schemas"][0]))  # type: ignore[index]
        assert label is not None
        assert schema is not None
        assert label.namespace == schema.namespace


def assert_nothing_left(shop: DjangoProject) -> None:
    for database in shop.test_databases:
        assert shop.public_tables(database) == 0
        # Worker schemas renamed for dropping, then dropped by the runs' reapers.
        assert settled(shop.server, database) == []
    # Django's per-worker databases (test_<name>_gw0, …) were never made.
    assert shop.databases_like(f"test\\_{shop.name}%\\_gw%") == []


def four_green(shop: DjangoProject, modes: list[tuple[str, ...]]) -> None:
    procs = [shop.start("-n", "2", *COMMITTING, *mode) for mode in modes]
    runs = [inner.finish(shop.root, proc) for proc in procs]  # type: ignore[arg-type]
    assert [r.returncode for r in runs] == [0] * RUNS, [r.output[-3000:] for r in runs]
    records = inner.read_records(shop.root)
    assert len(records) == RUNS * 2 * 2  # runs, workers, aliases
    assert_isolated(shop, records)
    assert len({tuple(r["schemas"]) for r in records}) == RUNS * 2  # type: ignore[arg-type]
    assert_nothing_left(shop)


def test_four_at_once_with_reuse_db(shop: DjangoProject) -> None:
    # The example ships --reuse-db in addopts, as the templates do; no test database yet.
    four_green(shop, [()] * RUNS)


def test_four_at_once_without_reuse_db_and_with_create_db(shop: DjangoProject) -> None:
    plain = ("-o", "addopts=")
    four_green(shop, [plain, plain, ("--create-db",), ("--create-db",)])


def test_four_at_once_collide_without_shoal(shop: DjangoProject) -> None:
    runs = shop.run_together(RUNS, "-n", "2", *COMMITTING, "-o", "addopts=", "-p", "no:shoal")
    failed = [r for r in runs if r.returncode != 0]
    assert failed, "four runs sharing test_<name>_gw0/_gw1 did not collide"
    assert any(any(c in r.output for c in COLLISIONS) for r in failed), failed[0].output[-3000:]
