"""Django benchmark: a worker's ready, migrated database — warm-pool claim vs migrate vs
a database-mode template clone.

The project is ``examples/django`` (two aliases behind a router, two apps with
migrations, auth and contenttypes). I invocations with W xdist workers each start at the
same moment (I*W processes released by one barrier), each provisioning its worker's
schema in both of Django's test databases exactly as the pytest plugin does
(``WorkerSchemas.provision`` of the Django plan):

- migrate: the pool is off; each worker creates its schema and runs Django's ``migrate``
  in it (through the ``django`` setup kind, verified), which is what every worker of a
  run without shoal's pool pays, and what pytest-django pays per ``test_<name>_gwN``
  database on top of creating it.
- claim: before the barrier (off the clock), the pool is warmed with one migrated schema
  per worker; each worker claims one by rename, and Django's own ``migrate`` afterwards is
  a no-op (its ``django_migrations`` rows came with the schema).
- clone: database mode (``django_mode = "database"``); the templates are built when the
  plan is made (off the clock), and each worker gets its own database by ``CREATE
  DATABASE … TEMPLATE`` exactly as the plugin does (``WorkerDatabases.provision``), inside
  a DDL slot, with its owner comment.

Reported: p50 / p95 / max of the provisioning time per worker (both aliases), and the
ratios migrate/claim and migrate/clone. Run from the repository root::

    .venv/bin/python bench/django.py                 # the embedded server, 4 x 2, 3 rounds
    .venv/bin/python bench/django.py --url postgresql://postgres@127.0.0.1:5432/postgres

Only the two test databases this script names (``test_shoalbench_<token>_shop`` and
``…_ledger``), the workers' databases of the clone mode and the templates this run builds
are created, and they are dropped at the end (a template that was there before is kept).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import secrets
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "django"
# Run as a script, this file's directory comes first on sys.path, and this file is named
# like the package it benchmarks.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def setup_django(url: str) -> None:
    os.environ["SHOP_DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "shop.settings"
    sys.path.insert(0, str(EXAMPLE))
    import django

    django.setup()


def plan_for(mode: str, workers: int) -> Any:
    from shoal import naming
    from shoal.integrations.django.plan import build
    from shoal.plan import RunPlan

    run = RunPlan(
        namespace=naming.new_namespace(os.getpid(), int(time.time()), os.urandom(4)),
        origin="fresh",
        owner="",
        project_root=str(EXAMPLE),
        configured=False,
        pool_size=workers if mode == "claim" else 0,
    )
    plan = build(run, mode="database" if mode == "clone" else "schema")
    assert plan is not None
    return plan


def warm(plan: Any, size: int) -> None:
    from shoal import setups
    from shoal.pg import pool

    for target in plan.plan.targets:
        setup = setups.load(target.setup_spec, key=target.name, source="bench", root=plan.plan.root)
        pool.warm(
            replace(target, setup=setup),
            target.fingerprint,
            size,
            namespace=plan.plan.namespace,
            tail=plan.plan.tail,
            ddl_slots="auto",
            timeout=10,
            deadline=time.monotonic() + 600,
        )


def worker(plan_json: str, namespace: str, worker_id: str, barrier: Any, out: Any) -> None:
    from shoal.integrations.django.plan import DjangoPlan
    from shoal.pg.worker import WorkerSchemas

    plan = DjangoPlan.from_json(plan_json)
    run = replace(plan.plan, namespace=namespace)
    if plan.mode == "database":
        clone_worker(run, worker_id, barrier, out)
        return
    schemas = WorkerSchemas.from_plan(run, worker_id, list(run.targets))
    schemas.prepare()  # lease and connections, off the clock, as a worker does
    barrier.wait()
    started = time.perf_counter()
    error = None
    try:
        schemas.provision()
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    elapsed = time.perf_counter() - started
    claimed = all(t.claimed for t in schemas.timings) and bool(schemas.timings)
    per_database = [t.total_s for t in schemas.timings]
    schemas.teardown(keep=False)
    out.put((elapsed, per_database, claimed, error))


def clone_worker(run: Any, worker_id: str, barrier: Any, out: Any) -> None:
    from shoal.pg.databases import WorkerDatabases

    databases = WorkerDatabases(
        list(run.targets), run.namespace, worker_id, ddl_slots=run.ddl_slots, project=run.project
    )
    databases.prepare()  # the lease, off the clock, as a worker does
    barrier.wait()
    started = time.perf_counter()
    error = None
    try:
        databases.provision()
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    elapsed = time.perf_counter() - started
    per_database = [p.total_s for p in databases.provisioned]
    problems = databases.teardown(keep=False)
    out.put((elapsed, per_database, False, error or (problems[0] if problems else None)))


def round_(
    plan: Any, invocations: int, workers: int
) -> list[tuple[float, list[float], bool, str | None]]:
    from django.db import connections

    from shoal import naming

    connections.close_all()
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(invocations * workers)
    out = ctx.Queue()
    procs = []
    for i in range(invocations):
        namespace = naming.new_namespace(os.getpid() + i, int(time.time()), os.urandom(4))
        for w in range(workers):
            args = (plan.to_json(), namespace, f"gw{w}", barrier, out)
            procs.append(ctx.Process(target=worker, args=args))
    for proc in procs:
        proc.start()
    results = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
    return results


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a libpq URL of the server (default: the embedded one)")
    parser.add_argument("--scenario", default="4x2", help="invocations x workers")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    invocations, workers = (int(n) for n in args.scenario.split("x"))
    from shoal import conninfo

    if args.url is None:
        from shoal.embedded import EmbeddedServer

        base = EmbeddedServer(None).ensure_running()
    else:
        base = args.url
    name = f"shoalbench_{secrets.token_hex(4)}_shop"
    setup_django(conninfo.with_params(base, dbname=name))
    modes = ("migrate", "claim", "clone")
    timings: dict[str, list[float]] = {mode: [] for mode in modes}
    databases: dict[str, list[float]] = {mode: [] for mode in modes}
    problems: list[str] = []
    templates: list[str] = []
    try:
        for mode in modes:
            plan = plan_for(mode, invocations * workers)
            if mode == "clone":
                templates = built_here(base, plan)
            for _ in range(args.rounds):
                if mode == "claim":
                    warm(plan, invocations * workers)
                for elapsed, each, claimed, error in round_(plan, invocations, workers):
                    if error is not None or claimed != (mode == "claim"):
                        problems.append(f"{mode}: claimed={claimed} error={error}")
                    timings[mode].append(elapsed * 1000)
                    databases[mode] += [s * 1000 for s in each]
    finally:
        drop(base, name, templates)
    print(f"Django example, {invocations} invocations x {workers} workers, {args.rounds} rounds")
    for title, found in (("one database", databases), ("a worker (both aliases)", timings)):
        print(f"{title:>24} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}    n")
        for mode, values in found.items():
            p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
            print(f"{mode:>24} {p50:9.1f} {p95:9.1f} {max(values):9.1f} {len(values):4}")
        m = found["migrate"]
        for other in ("claim", "clone"):
            c = found[other]
            print(
                f"{'migrate/' + other:>24} p50 {percentile(m, 0.5) / percentile(c, 0.5):.1f}x, "
                f"p95 {percentile(m, 0.95) / percentile(c, 0.95):.1f}x "
                f"(mean {statistics.mean(m) / statistics.mean(c):.1f}x)"
            )
    for problem in problems[:10]:
        print("problem:", problem)
    return 1 if problems else 0


def built_here(base: str, plan: Any) -> list[str]:
    """The templates the clone mode's plan built (not those that were there before)."""
    import psycopg

    from shoal import conninfo, naming
    from shoal.pg import databases

    with psycopg.connect(conninfo.with_params(base, dbname="postgres"), autocommit=True) as conn:
        return [
            t.name
            for t in databases.templates(conn)
            if t.namespace == plan.plan.namespace and naming.parse_template_database(t.name)
        ]


def drop(base: str, name: str, templates: list[str]) -> None:
    import psycopg
    from psycopg import sql

    from shoal import conninfo

    with psycopg.connect(conninfo.with_params(base, dbname="postgres"), autocommit=True) as conn:
        for database in (f"test_{name}", f"test_{name}_ledger", *templates):
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )


if __name__ == "__main__":
    raise SystemExit(main())
