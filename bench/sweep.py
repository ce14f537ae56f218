"""Sweep benchmark: dropping a backlog of dead runs' schemas, naive script vs ``shoal sweep``.

A backlog of N stale namespaces (``--namespaces``, default 56) is built in a dedicated
database ``shoal_bench_sweep``: one worker schema ``test_<namespace>_gw0`` each, holding a
generated 220-table schema (``--tables``: serial keys, columns of several types, foreign
keys to up to three earlier tables, one or two indexes per table besides the key), with
a valid owner comment created an hour ago and no connection carrying its namespace, so
every one is dead and past any grace period. The DDL text is generated once and run per
schema with ``SET LOCAL search_path``, one transaction per schema.

The backlog is then dropped twice, rebuilt in between:

- naive: every ``DROP SCHEMA … CASCADE`` in ONE transaction, as a hand-written cleanup
  script would do it;
- shoal: ``shoal.pg.sweep.sweep({"bench": url}, grace_s=0)``: each drop in its own short
  transaction inside a DDL slot, large schemas chunked.

Reported for each: wall time, whether it failed and with which error (naive) or how many
drops failed and how many schemas were dropped (shoal), and the peak number of
``pg_locks`` rows, sampled every 20 ms from a separate connection: of the whole cluster,
and of the backends connected to the bench database (the dropping connection itself;
other clients of a shared server do not count there). Ratios shoal/naive follow.

Run (from the repository root)::

    .venv/bin/python bench/sweep.py                  # the embedded server
    .venv/bin/python bench/sweep.py --url postgresql://postgres@127.0.0.1:5432/postgres

With ``--url``, database ``shoal_bench_sweep`` is created on that server if missing; only
schemas this script creates are dropped there (leftovers by name, on exit). Note that the
naive transaction may fill the server's shared lock table for a moment: other clients of
that server can then fail with "out of shared memory" too.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from common import machine
from psycopg import sql

from shoal import conninfo, naming
from shoal.embedded import EmbeddedServer
from shoal.pg import schemas
from shoal.pg.sweep import sweep

DATABASE = "shoal_bench_sweep"
BENCH_LABEL = "shoal_bench_sweep"  # application_name prefix of every bench connection
WORKER = "gw0"
STALE_FOR = timedelta(hours=1)

Conn = psycopg.Connection[tuple[Any, ...]]


# -- the backlog ---------------------------------------------------------------------------


def build_ddl(tables: int, seed: int = 220) -> str:
    """Deterministic DDL for ``tables`` tables, unqualified (run with a search path)."""
    rng = random.Random(seed)
    statements = []
    for i in range(tables):
        name = f"t{i:03d}"
        parents = sorted(rng.sample(range(i), k=min(i, rng.randint(0, 3))))
        fks = [f"t{p:03d}_id" for p in parents]
        columns = [
            "id serial PRIMARY KEY",
            "code varchar(32) NOT NULL",
            "name varchar(200) NOT NULL",
            "description text",
            "amount numeric(12, 2)",
            "quantity integer NOT NULL DEFAULT 0",
            "active boolean NOT NULL DEFAULT true",
            "attributes jsonb",
            "created_at timestamptz DEFAULT now()",
            *(f"{fk} integer REFERENCES t{p:03d} (id)" for fk, p in zip(fks, parents, strict=True)),
        ]
        statements.append(f"CREATE TABLE {name} (\n  " + ",\n  ".join(columns) + "\n)")
        statements.append(f"CREATE INDEX ix_{name}_name ON {name} (name)")
        if fks:
            statements.append(f"CREATE INDEX ix_{name}_{fks[0]} ON {name} ({fks[0]})")
    return ";\n".join(statements) + ";\n"


def bench_connect(url: str, suffix: str) -> Conn:
    return psycopg.connect(url, autocommit=True, application_name=f"{BENCH_LABEL}_{suffix}")


def new_backlog(count: int) -> list[str]:
    """``count`` fresh schema names of namespaces no connection carries (dead runs)."""
    names: set[str] = set()
    while len(names) < count:
        namespace = naming.new_namespace(os.getpid(), int(time.time()), os.urandom(4))
        names.add(naming.schema_name(namespace, WORKER))
    return sorted(names)


def build_backlog(url: str, names: list[str], ddl: str, jobs: int) -> float:
    """Create every schema of ``names`` with its tables and owner comment, on ``jobs``
    connections at once; seconds taken."""
    created = datetime.now(UTC) - STALE_FOR
    started = time.perf_counter()
    progress = {"done": 0}
    guard = threading.Lock()

    def build(part: list[str]) -> None:
        with bench_connect(url, "build") as conn:
            for schema in part:
                parsed = naming.parse_schema(schema)
                assert parsed is not None
                comment = schemas.owner_comment(parsed.namespace, parsed.worker, now=created)
                with conn.transaction():
                    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
                    conn.execute(
                        sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
                            sql.Identifier(schema), sql.Literal(comment)
                        )
                    )
                    conn.execute(
                        sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema))
                    )
                    conn.execute(ddl.encode())  # no parameters: several statements at once
                with guard:
                    progress["done"] += 1
                    done = progress["done"]
                if done % 8 == 0 or done == len(names):
                    elapsed = time.perf_counter() - started
                    print(f"  built {done}/{len(names)} schemas, {elapsed:.0f} s", flush=True)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for future in [pool.submit(build, names[i::jobs]) for i in range(jobs)]:
            future.result()
    return time.perf_counter() - started


def existing(conn: Conn, names: list[str]) -> list[str]:
    rows = conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s) ORDER BY 1", (names,)
    ).fetchall()
    return [str(r[0]) for r in rows]


def drop_leftovers(url: str, names: list[str], batch: int = 40) -> list[str]:
    """Drop whichever of ``names`` still exist, tables ``batch`` at a time first (a whole
    220-table schema takes more locks than a default server's lock table comfortably
    holds), each step in its own transaction; return the schemas found."""
    with bench_connect(url, "cleanup") as conn:
        found = existing(conn, names)
        for name in found:
            while True:
                rows = conn.execute(
                    "SELECT c.relname FROM pg_class c JOIN pg_namespace n"
                    " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'"
                    " ORDER BY c.oid DESC LIMIT %s",
                    (name, batch),
                ).fetchall()
                with conn.transaction():
                    conn.execute("SET LOCAL lock_timeout = '30s'")
                    if not rows:
                        conn.execute(
                            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
                        )
                        break
                    tables = sql.SQL(", ").join(sql.Identifier(name, r[0]) for r in rows)
                    conn.execute(sql.SQL("DROP TABLE {} CASCADE").format(tables))
    return found


def relation_count(url: str, names: list[str]) -> int:
    with bench_connect(url, "check") as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = ANY(%s)",
            (names,),
        ).fetchone()
    return int(row[0]) if row else 0


# -- lock sampling -------------------------------------------------------------------------


class LockSampler:
    """Samples ``pg_locks`` every ``interval`` seconds from a connection of its own: the row
    count of the whole cluster, and of the backends connected to ``database``."""

    QUERY = (
        "SELECT count(*), count(*) FILTER (WHERE a.datname = %s AND l.pid <> pg_backend_pid())"
        " FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
    )

    def __init__(self, url: str, database: str, interval: float = 0.02) -> None:
        self.url, self.database, self.interval = url, database, interval
        self.cluster: list[int] = []
        self.ours: list[int] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()

    def __enter__(self) -> LockSampler:
        self._thread.start()
        self._ready.wait(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with bench_connect(self.url, "sampler") as conn:
            self._ready.set()
            while not self._stop.is_set():
                try:
                    row = conn.execute(self.QUERY, (self.database,)).fetchone()
                    assert row is not None
                    self.cluster.append(int(row[0]))
                    self.ours.append(int(row[1]))
                except psycopg.Error as exc:  # e.g. the lock table is full
                    self.errors.append(first_line(exc))
                self._stop.wait(self.interval)

    @property
    def peak_cluster(self) -> int:
        return max(self.cluster, default=0)

    @property
    def peak_ours(self) -> int:
        return max(self.ours, default=0)


def baseline_locks(url: str, seconds: float = 1.0) -> int:
    """Median ``pg_locks`` rows of the cluster over ``seconds``, before a measurement."""
    with LockSampler(url, DATABASE) as sampler:
        time.sleep(seconds)
    return int(statistics.median(sampler.cluster)) if sampler.cluster else 0


# -- the two ways of dropping --------------------------------------------------------------


@dataclass
class Outcome:
    mode: str
    wall_s: float
    ok: bool
    dropped: int
    failed: int
    error: str = ""
    peak_cluster: int = 0
    peak_ours: int = 0
    baseline: int = 0
    samples: int = 0
    sampler_errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]


def drop_naive(url: str, names: list[str]) -> Outcome:
    """Every DROP SCHEMA … CASCADE in one transaction, no timeouts."""
    outcome = Outcome("naive", 0.0, ok=False, dropped=0, failed=0)
    done = 0
    with bench_connect(url, "naive") as conn:
        started = time.perf_counter()
        try:
            with conn.transaction():
                for name in names:
                    conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))
                    done += 1
            outcome.ok, outcome.dropped = True, len(names)
        except psycopg.Error as exc:
            outcome.wall_s = time.perf_counter() - started
            hint = getattr(exc.diag, "message_hint", None)
            outcome.error = f"{exc.sqlstate} {first_line(exc)}" + (
                f" (HINT: {hint})" if hint else ""
            )
            outcome.failed = len(names)
            outcome.notes.append(
                f"failed at statement {done + 1} of {len(names)}; the whole transaction rolled"
                " back, nothing was dropped"
            )
            if done:
                outcome.notes.append(
                    f"{done} drops had run in {outcome.wall_s:.1f} s before the failure"
                    f" ({outcome.wall_s / done:.2f} s per schema)"
                )
        else:
            outcome.wall_s = time.perf_counter() - started
    return outcome


def drop_shoal(url: str, names: list[str]) -> Outcome:
    """``sweep({"bench": url}, grace_s=0)``; only this run's schemas are counted."""
    started = time.perf_counter()
    result = sweep({"bench": url}, grace_s=0)
    wall = time.perf_counter() - started
    database = result.databases.get("bench")
    ours = set(names)
    dropped = [s for s in database.dropped if s in ours] if database else []
    failed = [f for f in database.failed if f["schema"] in ours] if database else []
    skipped = [s for s in database.skipped if s["schema"] in ours] if database else []
    outcome = Outcome("shoal", wall, ok=result.ok, dropped=len(dropped), failed=len(failed))
    if dropped:
        outcome.notes.append(f"{wall / len(dropped):.2f} s per schema dropped")
    if failed:
        outcome.error = f"{len(failed)} drops failed, first: {failed[0]['error']}"
    if skipped:
        reasons = sorted({s["reason"] for s in skipped})
        outcome.notes.append(f"{len(skipped)} of this run's schemas skipped: {', '.join(reasons)}")
    if not result.detection_complete:
        outcome.notes.append(
            "detection incomplete: " + "; ".join(str(c.error) for c in result.clusters)
        )
    others = (len(database.dropped) - len(dropped)) if database else 0
    if others:
        outcome.notes.append(f"the sweep also dropped {others} schemas this run did not create")
    return outcome


def measure(mode: str, url: str, names: list[str]) -> Outcome:
    baseline = baseline_locks(url)
    with LockSampler(url, DATABASE) as sampler:
        outcome = drop_naive(url, names) if mode == "naive" else drop_shoal(url, names)
    outcome.peak_cluster, outcome.peak_ours = sampler.peak_cluster, sampler.peak_ours
    outcome.baseline, outcome.samples = baseline, len(sampler.cluster)
    outcome.sampler_errors = sampler.errors
    with bench_connect(url, "check") as conn:
        left = existing(conn, names)
    if left and outcome.ok:
        outcome.notes.append(f"{len(left)} schemas still exist after it")
    return outcome


# -- server and reporting ------------------------------------------------------------------


def prepare_database(url: str | None) -> str:
    """The URL of the bench database, created if missing (embedded server by default)."""
    if url is None:
        server = EmbeddedServer(None)
        server.ensure_running()
        server.ensure_database(DATABASE)
        return server.url(DATABASE)
    with bench_connect(url, "admin") as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    return conninfo.with_params(url, dbname=DATABASE)


def describe_server(url: str) -> str:
    with bench_connect(url, "admin") as conn:
        row = conn.execute(
            "SELECT current_setting('server_version'),"
            " current_setting('max_locks_per_transaction')::int,"
            " current_setting('max_connections')::int,"
            " current_setting('max_prepared_transactions')::int,"
            " (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
        ).fetchone()
    assert row is not None
    version, locks, connections, prepared, clients = row
    capacity = int(locks) * (int(connections) + int(prepared))
    return (
        f"server: PostgreSQL {version} at {conninfo.mask(url)}\n"
        f"max_locks_per_transaction {locks}, max_connections {connections},"
        f" max_prepared_transactions {prepared}: lock table ~{capacity:,} entries;"
        f" {clients} client connections before the run"
    )


def preexisting(url: str) -> list[str]:
    with bench_connect(url, "check") as conn:
        return [s for s, _ in schemas.list_schemas(conn)]


HEADER = (
    f"{'mode':<6} {'wall s':>8} {'result':<7} {'dropped':>8} {'failed':>7}"
    f" {'peak locks (cluster)':>21} {'peak locks (bench db)':>22} {'baseline':>9}"
)


def row(o: Outcome, total: int) -> str:
    return (
        f"{o.mode:<6} {o.wall_s:>8.2f} {'ok' if o.ok else 'FAILED':<7} {f'{o.dropped}/{total}':>8}"
        f" {o.failed:>7} {o.peak_cluster:>21,} {o.peak_ours:>22,} {o.baseline:>9,}"
    )


def ratio(a: float, b: float) -> str:
    return "n/a" if b == 0 else f"{a / b:.2f}x"


def report(outcomes: list[Outcome], total: int) -> list[str]:
    lines = [HEADER, *(row(o, total) for o in outcomes)]
    for o in outcomes:
        if o.error:
            lines.append(f"{o.mode} error: {o.error}")
        lines += [f"{o.mode}: {note}" for note in o.notes]
        if o.sampler_errors:
            lines.append(
                f"{o.mode}: {len(o.sampler_errors)} of the sampler's queries failed meanwhile"
                f" ({o.sampler_errors[0]})"
            )
    by = {o.mode: o for o in outcomes}
    if "naive" in by and "shoal" in by:
        naive, shoal = by["naive"], by["shoal"]
        lines.append(
            f"shoal/naive: wall time {ratio(shoal.wall_s, naive.wall_s)},"
            f" peak locks (bench db) {ratio(shoal.peak_ours, naive.peak_ours)},"
            f" peak locks (cluster) {ratio(shoal.peak_cluster, naive.peak_cluster)}"
            + ("  [naive failed: its time is time to failure]" if not naive.ok else "")
        )
    return lines


LEGEND = (
    "peak locks: most pg_locks rows seen, sampled every 20 ms; cluster = every backend;"
    " bench db = the\nbackends connected to the bench database (the dropping connection);"
    " baseline = median cluster rows\nin the second before the drop (other clients)"
)


# -- entry point ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", help="server to use (default: the embedded server)")
    parser.add_argument("--namespaces", type=int, default=56, help="stale namespaces to build")
    parser.add_argument("--tables", type=int, default=220, help="tables per worker schema")
    parser.add_argument(
        "--build-jobs", type=int, default=2, help="connections building the backlog at once"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    url = prepare_database(args.url)
    ddl = build_ddl(args.tables)
    started = time.monotonic()
    print(f"machine: {machine()}")
    print(describe_server(url))
    already = preexisting(url)
    if already:
        print(
            f"note: {len(already)} test_* schemas already in {DATABASE} (the sweep may drop them)"
        )
    print(
        f"backlog: {args.namespaces} stale namespaces x 1 worker schema x {args.tables} tables",
        flush=True,
    )
    created: list[str] = []
    outcomes: list[Outcome] = []
    try:
        for mode in ("naive", "shoal"):
            names = new_backlog(args.namespaces)
            created += names
            print(f"building the backlog for {mode} ...", flush=True)
            built = build_backlog(url, names, ddl, args.build_jobs)
            relations = relation_count(url, names)
            print(
                f"built {len(names)} schemas, {relations:,} relations in {built:.1f} s;"
                f" dropping them ({mode}) ...",
                flush=True,
            )
            outcome = measure(mode, url, names)
            outcomes.append(outcome)
            print(row(outcome, len(names)), flush=True)
            mark = time.perf_counter()
            left = drop_leftovers(url, names)
            if left:
                print(
                    f"  dropped {len(left)} leftovers one per transaction in"
                    f" {time.perf_counter() - mark:.1f} s",
                    flush=True,
                )
        print("\n" + "\n".join(report(outcomes, args.namespaces)))
        print(LEGEND)
    finally:
        drop_leftovers(url, created)
        with bench_connect(url, "check") as conn:
            remaining = existing(conn, created)
        print(f"\ntotal {time.monotonic() - started:.0f} s; machine: {machine()}")
        print(f"bench schemas left behind: {', '.join(remaining) or 'none'}", flush=True)
    return 1 if remaining else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
