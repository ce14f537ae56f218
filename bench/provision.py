"""Provisioning benchmark: shoal's worker schemas against the naive ``test_gwN`` pattern.

For each scenario IxW, I pytest invocations with W xdist workers each start at the same
moment (I*W processes released by one barrier) against the same server, in a dedicated
database. Each process provisions one worker schema holding a generated SQLAlchemy
metadata (220 tables by default), keeps it a moment (``--hold``, standing in for the
tests), checks its tables are still its own, and drops it.

- shoal: a namespace per invocation, ``WorkerSchemas(..., ddl_slots="auto")``,
  ``provision()`` then ``teardown(keep=False)``; DDL throttled by DDL slots.
- naive: the seed write-up's pattern before shoal: schema ``test_gwN`` for worker gwN of
  every invocation, ``DROP SCHEMA IF EXISTS … CASCADE; CREATE SCHEMA …``, ``create_all``
  with the search path set to it, no throttling; invocations collide on the names.

Optional: ``--modes shoal,naive,unique`` adds "unique", the naive pattern with shoal's
per-invocation schema names (isolation without throttling), and ``--ddl-slots N`` sets
shoal's slot count instead of ``auto``.

- pool (``--modes shoal,pool``): shoal with its warm pool. Before the barrier (off the
  clock), ``shoal pool warm`` builds one ready schema per worker of the scenario; each
  worker's ``provision()`` then claims one by rename. Compared with "shoal" (building
  in place) in the same run: ``pool/shoal`` latency ratios and the speed-up.
- floor (``--modes pool,floor``): the floor under a claim. The pool is filled the same
  way; each worker, on a connection that renamed a scratch schema once (rolled back),
  renames a ready schema of its own (no two workers share one) to its worker name with
  one bare ``ALTER SCHEMA … RENAME``: no lock, no check, no comment.

Reported per scenario and mode: provisioning latency (p50, p95, max), errors by SQLSTATE,
clobbered workers (schema replaced or tables missing), the peak of ``pg_locks`` rows in
the cluster (sampled every 20 ms), and shoal/naive latency ratios from the same run.

Run (from the repository root)::

    .venv/bin/python bench/provision.py                  # the embedded server
    .venv/bin/python bench/provision.py --url postgresql://postgres@127.0.0.1:5432/postgres

With ``--url``, database ``shoal_bench`` is created on that server if missing; only
schemas this script names are created and dropped there.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import random
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import psycopg
from common import machine
from psycopg import sql
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    create_engine,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.pool import NullPool

from shoal import conninfo, naming, setups
from shoal.conninfo import sqlalchemy_url
from shoal.embedded import EmbeddedServer
from shoal.namespace import fresh
from shoal.pg import pool, verify
from shoal.pg.slots import (
    LOCKS_PER_DDL,
    MAX_AUTO_SLOTS,
    Lease,
    control_url,
    lock_settings,
    slot_count,
)
from shoal.pg.worker import WorkerSchemas
from shoal.plan import Target
from shoal.setups import Setup, fingerprint

# unique: the naive pattern with shoal's per-invocation names: isolation without throttling.
MODES = ("shoal", "naive", "unique", "pool", "floor")
DEFAULT_MODES = "shoal,naive"
BENCH_LABEL = "shoal_bench"  # application_name prefix of every bench connection
WARMUP_SCHEMA = "shoal_bench_warmup"
SQLSTATES = {
    "55P03": "lock timeout",
    "40P01": "deadlock",
    "53200": "out of shared memory",
    "42P06": "duplicate schema",
    "23505": "unique violation",
    "3F000": "no schema selected",
    "42P07": "duplicate table",
    "42P01": "undefined table",
    "57014": "statement timeout",
    "XX000": "internal error",
}


# -- the schema under test ---------------------------------------------------------------


def build_metadata(tables: int, seed: int = 220) -> MetaData:
    """A realistic, deterministic metadata: integer keys, mixed column types, foreign keys
    to up to three earlier tables, two indexes per table plus one per first foreign key."""
    rng = random.Random(seed)
    metadata = MetaData()
    for i in range(tables):
        name = f"t{i:03d}"
        parents = rng.sample(range(i), k=min(i, rng.randint(0, 3)))
        fks = [Column(f"t{p:03d}_id", Integer, ForeignKey(f"t{p:03d}.id")) for p in parents]
        Table(
            name,
            metadata,
            Column("id", Integer, primary_key=True),
            Column("code", String(32), nullable=False, unique=True),
            Column("name", String(200), nullable=False),
            Column("description", Text),
            Column("amount", Numeric(12, 2)),
            Column("quantity", Integer, nullable=False, server_default="0"),
            Column("active", Boolean, nullable=False, server_default="true"),
            Column("attributes", JSONB),
            Column("created_at", DateTime(timezone=True), server_default=func.now()),
            *fks,
            Index(f"ix_{name}_name", "name"),
            Index(f"ix_{name}_active_created", "active", "created_at"),
            *([Index(f"ix_{name}_{fks[0].name}", fks[0].name)] if fks else []),
        )
    return metadata


# -- configuration -----------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    invocations: int
    workers: int

    @property
    def label(self) -> str:
        return f"{self.invocations}x{self.workers}"


def parse_scenarios(text: str) -> list[Scenario]:
    scenarios = []
    for part in text.split(","):
        left, sep, right = part.strip().lower().partition("x")
        if not (sep and left.isdigit() and right.isdigit() and int(left) and int(right)):
            raise argparse.ArgumentTypeError(f"{part!r}: expected IxW, e.g. 4x2")
        scenarios.append(Scenario(int(left), int(right)))
    return scenarios


def parse_modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",")]
    if not modes or not set(modes) <= set(MODES):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a comma-separated subset of {MODES}")
    return modes


def parse_slots(text: str) -> int | str:
    if text == "auto" or (text.isdigit() and int(text) > 0):
        return text if text == "auto" else int(text)
    raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer or 'auto'")


@dataclass(frozen=True)
class Spec:
    """What one worker process does (pickled to the child)."""

    mode: str
    invocation: int
    worker: str
    namespace: str
    url: str
    control_url: str
    tables: int
    hold_s: float
    timeout_s: float
    jitter_s: float
    ddl_slots: int | str
    lock_capacity: int = 0
    lock_footprint: int | None = None  # as shoal records it per fingerprint after a build
    pool_schema: str | None = None  # floor mode: the ready schema this worker renames


@dataclass
class WorkerResult:
    invocation: int
    worker: str
    provision_s: float | None = None  # wall time: provision() / drop+create+create_all
    slot_wait_s: float | None = None  # the rest: shoal's Timing, or the naive steps
    create_s: float | None = None
    setup_s: float | None = None
    teardown_s: float | None = None
    claimed: bool = False  # pool mode: the schema came from the warm pool
    clobbered: bool = False
    errors: list[str] = field(default_factory=list)


# -- errors --------------------------------------------------------------------------------


def classify(exc: BaseException) -> str:
    """SQLSTATE and a name for the first PostgreSQL error in the chain, else the type."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        orig = getattr(current, "orig", None)  # SQLAlchemy wraps the driver's error
        candidate = orig if isinstance(orig, psycopg.Error) else current
        if isinstance(candidate, psycopg.Error) and candidate.sqlstate:
            state = candidate.sqlstate
            return f"{state} {SQLSTATES.get(state, type(candidate).__name__)}"
        current = current.__cause__ or current.__context__
    return type(exc).__name__


def classify_text(text: str) -> str:
    """The same for a problem shoal reports as text (teardown)."""
    for state, name in SQLSTATES.items():
        if name in text or (state == "40P01" and "deadlock detected" in text):
            return f"{state} {name}"
    return "teardown problem"


# -- the worker processes ------------------------------------------------------------------


def schema_state(conn: psycopg.Connection[Any], schema: str) -> tuple[int | None, int]:
    """(oid, number of tables) of ``schema``; (None, 0) when it does not exist."""
    row = conn.execute(
        "SELECT n.oid::bigint, (SELECT count(*) FROM pg_class c"
        " WHERE c.relnamespace = n.oid AND c.relkind = 'r')"
        " FROM pg_namespace n WHERE n.nspname = %s",
        (schema,),
    ).fetchone()
    return (None, 0) if row is None else (int(row[0]), int(row[1]))


def bench_connect(url: str, suffix: str, **kwargs: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(
        url, autocommit=True, application_name=f"{BENCH_LABEL}_{suffix}", **kwargs
    )


def still_ours(url: str, schema: str, oid: int | None, tables: int) -> bool:
    with bench_connect(url, "check") as conn:
        return schema_state(conn, schema) == (oid, tables)


def run_shoal(spec: Spec, metadata: MetaData, barrier: Any) -> WorkerResult:
    result = WorkerResult(spec.invocation, spec.worker)
    hook = Setup(setups.kind_named("metadata"), f"build_metadata({spec.tables})", metadata)
    target = Target(
        name="bench",
        url=spec.url,
        control_url=spec.control_url,
        setup=hook,
        extensions=(),
        export_env=(),
        embedded=False,
        lock_capacity=spec.lock_capacity,
        lock_footprint=spec.lock_footprint,
    )
    schemas = WorkerSchemas(
        [target], spec.namespace, spec.worker, ddl_slots=spec.ddl_slots, pool=spec.mode == "pool"
    )
    schemas.check()  # as the plugin does, before the clock starts
    schemas.prepare()  # so does a worker's prepare()
    started = start_clock(spec, barrier)
    try:
        schemas.provision()
        result.provision_s = time.perf_counter() - started
        timing = schemas.timings[0]
        result.claimed = timing.claimed
        result.slot_wait_s, result.create_s, result.setup_s = (
            timing.slot_wait_s,
            timing.create_s,
            timing.setup_s,
        )
        with bench_connect(spec.url, "check") as conn:
            oid, _ = schema_state(conn, schemas.schema)
        time.sleep(spec.hold_s)
        result.clobbered = not still_ours(spec.url, schemas.schema, oid, len(metadata.tables))
    except Exception as exc:
        result.errors.append(f"provision: {classify(exc)}: {first_line(exc)}")
    finally:
        mark = time.perf_counter()
        problems = schemas.teardown(keep=False)
        result.teardown_s = time.perf_counter() - mark
        result.errors += [f"teardown: {classify_text(p)}: {p[:160]}" for p in problems]
    return result


def run_naive(spec: Spec, metadata: MetaData, barrier: Any) -> WorkerResult:
    result = WorkerResult(spec.invocation, spec.worker)
    schema = worker_schema(spec)
    who = f"{spec.mode}_i{spec.invocation}_{spec.worker}"
    # A safety net equal to the per-worker timeout, so a killed worker's backend stops too.
    guard = f"-c statement_timeout={int(spec.timeout_s * 1000)}"
    bound = conninfo.with_params(
        spec.url,
        options=f"-c search_path={schema} {guard}",
        application_name=f"{BENCH_LABEL}_{who}",
    )
    engine = create_engine(sqlalchemy_url(bound), poolclass=NullPool)
    started = start_clock(spec, barrier)
    phase = "provision"
    try:
        with bench_connect(spec.url, who, options=guard) as c:
            with c.transaction():  # the seed's "DROP …; CREATE …" string: one transaction
                c.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )
                c.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
                oid, _ = schema_state(c, schema)
            result.create_s = time.perf_counter() - started
            metadata.create_all(engine)
            result.provision_s = time.perf_counter() - started
            result.setup_s = result.provision_s - result.create_s
            result.clobbered = not still_ours(spec.url, schema, oid, len(metadata.tables))
            time.sleep(spec.hold_s)
            result.clobbered |= not still_ours(spec.url, schema, oid, len(metadata.tables))
            phase, mark = "teardown", time.perf_counter()
            c.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            result.teardown_s = time.perf_counter() - mark
    except Exception as exc:
        result.errors.append(f"{phase}: {classify(exc)}: {first_line(exc)}")
    finally:
        engine.dispose()
    return result


def run_floor(spec: Spec, barrier: Any) -> WorkerResult:
    """The bare rename a claim is built on, on a connection as warm as a worker's."""
    result = WorkerResult(spec.invocation, spec.worker)
    assert spec.pool_schema is not None
    name = worker_schema(spec)
    with bench_connect(spec.url, f"{spec.mode}_i{spec.invocation}_{spec.worker}") as conn:
        scratch = f"{name}_scratch"
        with conn.transaction(force_rollback=True):
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(scratch)))
            conn.execute(
                sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                    sql.Identifier(scratch), sql.Identifier(name)
                )
            )
        rename = sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
            sql.Identifier(spec.pool_schema), sql.Identifier(name)
        )
        started = start_clock(spec, barrier)
        try:
            conn.execute(rename)
            result.provision_s = result.create_s = time.perf_counter() - started
            result.claimed = True
            time.sleep(spec.hold_s)
        except Exception as exc:
            result.errors.append(f"provision: {classify(exc)}: {first_line(exc)}")
    return result  # the bench's cleanup drops the renamed schemas


def start_clock(spec: Spec, barrier: Any) -> float:
    """Wait for every worker, then (with --jitter) a random delay; the latency clock starts."""
    barrier.wait()
    time.sleep(random.uniform(0, spec.jitter_s))
    return time.perf_counter()


def worker_main(spec: Spec, barrier: Any, results: Any) -> None:
    metadata = build_metadata(spec.tables)
    try:
        if spec.mode == "floor":
            result = run_floor(spec, barrier)
        else:
            run = run_shoal if spec.mode in ("shoal", "pool") else run_naive
            result = run(spec, metadata, barrier)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole group; the parent cleans up
        return
    except Exception as exc:  # setup before the barrier, e.g. connecting
        barrier.abort()
        result = WorkerResult(spec.invocation, spec.worker, errors=[f"start: {first_line(exc)}"])
    results.put(asdict(result))


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def worker_schema(spec: Spec) -> str:
    """``test_gwN`` for naive (shared by every invocation), else shoal's per-invocation name."""
    if spec.mode == "naive":
        return f"test_{spec.worker}"
    return naming.schema_name(spec.namespace, spec.worker)


# -- the parent: server, sampling, scenarios, cleanup -------------------------------------


@dataclass(frozen=True)
class Server:
    url: str
    control_url: str
    version: str
    max_locks: int
    max_connections: int
    max_prepared: int
    slots: int


def prepare_database(url: str | None, database: str) -> str:
    """The URL of the bench database, created if missing (embedded server by default)."""
    if url is None:
        server = EmbeddedServer()
        server.ensure_running()
        server.ensure_database(database)
        return server.url(database)
    with bench_connect(url, "admin") as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
            return conninfo.with_params(url, dbname=database)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    return conninfo.with_params(url, dbname=database)


def describe_server(url: str) -> Server:
    control = control_url(url, 5)
    with bench_connect(control, "admin") as conn:
        row = conn.execute(
            "SELECT current_setting('server_version'),"
            " current_setting('max_locks_per_transaction')::int,"
            " current_setting('max_connections')::int,"
            " current_setting('max_prepared_transactions')::int"
        ).fetchone()
        assert row is not None
        slots = slot_count("auto", lock_settings(conn).capacity)
    return Server(url, control, str(row[0]), int(row[1]), int(row[2]), int(row[3]), slots)


class LockSampler:
    """Samples the cluster's ``pg_locks`` every ``interval`` seconds: the peak row count,
    the peak of DDL slots held, and how many slots were held while a worker queued for one."""

    QUERY = (
        "SELECT count(*), count(*) FILTER (WHERE s AND granted),"
        " count(*) FILTER (WHERE s AND NOT granted),"
        " count(*) FILTER (WHERE s AND granted AND NOT a.application_name LIKE ANY(%s))"
        " FROM (SELECT pid, granted, locktype = 'advisory' AND objsubid = 2"
        "   AND classid::bigint = %s AND objid::bigint < %s AS s FROM pg_locks) l"
        " LEFT JOIN pg_stat_activity a ON l.s AND a.pid = l.pid"
    )

    def __init__(self, url: str, ours: list[str], interval: float = 0.02) -> None:
        self.url = url
        self.ours = ours  # application_name patterns of this run's connections
        self.interval = interval
        self.peak_locks = 0
        self.peak_slots = 0
        self.peak_foreign_slots = 0
        self.held_while_queued: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LockSampler:
        self._conn = bench_connect(self.url, "locks")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._conn.close()

    def _run(self) -> None:
        # Slot locks use the second key 0..N-1; shoal's other locks sit at 1,000,000 and up.
        params = (self.ours, naming.LOCK_CLASS, 1_000_000)
        while not self._stop.wait(self.interval):
            row = self._conn.execute(self.QUERY, params).fetchone()
            if row is None:
                continue
            locks, held, queued, foreign = (int(v) for v in row)
            self.peak_locks = max(self.peak_locks, locks)
            self.peak_slots = max(self.peak_slots, held)
            self.peak_foreign_slots = max(self.peak_foreign_slots, foreign)
            if queued:
                self.held_while_queued.append(held)


@dataclass
class ModeRun:
    mode: str
    scenario: Scenario
    results: list[WorkerResult]
    peak_locks: int
    peak_slots: int
    peak_foreign_slots: int
    held_while_queued: list[int]
    span_s: float
    leftovers: list[str]

    def merge(self, other: ModeRun) -> ModeRun:
        """Pool a repetition: results and samples concatenated, peaks and spans maxed."""
        return ModeRun(
            self.mode,
            self.scenario,
            self.results + other.results,
            max(self.peak_locks, other.peak_locks),
            max(self.peak_slots, other.peak_slots),
            max(self.peak_foreign_slots, other.peak_foreign_slots),
            self.held_while_queued + other.held_while_queued,
            max(self.span_s, other.span_s),
            self.leftovers + other.leftovers,
        )


def make_specs(
    mode: str, scenario: Scenario, server: Server, args: argparse.Namespace
) -> list[Spec]:
    specs = []
    for invocation in range(scenario.invocations):
        namespace = naming.new_namespace(os.getpid(), int(time.time()), os.urandom(4))
        specs += [
            Spec(
                mode=mode,
                invocation=invocation,
                worker=f"gw{number}",
                namespace=namespace,
                url=server.url,
                control_url=server.control_url,
                tables=args.tables,
                hold_s=args.hold,
                timeout_s=args.worker_timeout,
                jitter_s=args.jitter,
                ddl_slots=args.ddl_slots,
                lock_capacity=target_capacity(server),
                lock_footprint=None if args.no_footprint else args.footprint,
            )
            for number in range(scenario.workers)
        ]
    return specs


def created_names(specs: list[Spec]) -> list[str]:
    return sorted({worker_schema(s) for s in specs})


def collect(
    procs: list[Any], results: Any, specs: list[Spec], deadline: float
) -> list[WorkerResult]:
    """Results as they arrive; a worker still running at the deadline is killed."""
    collected: dict[tuple[int, str], WorkerResult] = {}
    while len(collected) < len(specs) and time.monotonic() < deadline:
        try:
            item = results.get(timeout=0.2)
        except queue.Empty:
            if not any(p.is_alive() for p in procs) and results.empty():
                break
            continue
        collected[(item["invocation"], item["worker"])] = WorkerResult(**item)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for spec in specs:
        key = (spec.invocation, spec.worker)
        if key not in collected:
            collected[key] = WorkerResult(*key, errors=["provision: timeout (worker killed)"])
    return [collected[(s.invocation, s.worker)] for s in specs]


def run_mode(
    mode: str, scenario: Scenario, server: Server, args: argparse.Namespace, names: set[str]
) -> ModeRun:
    ctx = mp.get_context("forkserver")
    specs = make_specs(mode, scenario, server, args)
    names.update(created_names(specs))
    if mode in ("pool", "floor"):
        fill_pool(server, args, len(specs))
    if mode == "floor":
        ready = sorted(pool_names(server))
        specs = [replace(s, pool_schema=name) for s, name in zip(specs, ready, strict=True)]
    barrier, results = ctx.Barrier(len(specs) + 1), ctx.Queue()
    procs = [ctx.Process(target=worker_main, args=(s, barrier, results)) for s in specs]
    try:
        for proc in procs:
            proc.start()
        with LockSampler(server.control_url, label_patterns(specs)) as sampler:
            barrier.wait(timeout=120)  # every worker imported, connected and ready
            deadline = time.monotonic() + args.worker_timeout
            done = collect(procs, results, specs, deadline)
            span = max((r.provision_s or 0.0) for r in done)
        for proc in procs:
            proc.join(timeout=10)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=10)
        leftovers = drop_leftovers(server.url, created_names(specs), specs)
        if mode in ("pool", "floor"):
            leftovers += clear_pool(server)
    return ModeRun(
        mode,
        scenario,
        done,
        sampler.peak_locks,
        sampler.peak_slots,
        sampler.peak_foreign_slots,
        sampler.held_while_queued,
        span,
        leftovers,
    )


def run_scenario(
    scenario: Scenario,
    modes: list[str],
    server: Server,
    args: argparse.Namespace,
    names: set[str],
    first: int,
) -> list[ModeRun]:
    """Every mode ``--repeat`` times, alternating which goes first (the machine may be busy)."""
    pooled: dict[str, ModeRun] = {}
    for repetition in range(args.repeat):
        order = modes if (first + repetition) % 2 == 0 else modes[::-1]
        for mode in order:
            run = run_mode(mode, scenario, server, args, names)
            pooled[mode] = pooled[mode].merge(run) if mode in pooled else run
    return [pooled[mode] for mode in modes]


def label_patterns(specs: list[Spec]) -> list[str]:
    """LIKE patterns matching the application_name of every worker connection of ``specs``."""
    ours = {f"{BENCH_LABEL}_{s.mode}_i{s.invocation}_{s.worker}" for s in specs}
    return sorted(ours | {f"pytest_%{s.namespace}%" for s in specs})


def bench_target(server: Server, tables: int) -> Target:
    hook = Setup(setups.kind_named("metadata"), f"build_metadata({tables})", build_metadata(tables))
    return Target(
        name="bench",
        url=server.url,
        control_url=server.control_url,
        setup=hook,
        extensions=(),
        export_env=(),
        embedded=False,
    )


def fill_pool(server: Server, args: argparse.Namespace, size: int) -> None:
    """Off the clock: one ready schema per worker, built as ``shoal pool warm`` builds them."""
    target = bench_target(server, args.tables)
    current = fingerprint(target.setup)
    assert current is not None
    started = time.perf_counter()
    result = pool.warm(
        target,
        current,
        size,
        namespace=fresh().token,
        tail=(),
        ddl_slots=args.ddl_slots,
        timeout=5,
        deadline=time.monotonic() + 600,
    )
    elapsed = time.perf_counter() - started
    print(
        f"  (pool: built {len(result.built)} ready schemas in {elapsed:.1f} s,"
        f" {result.ready_after} ready)",
        flush=True,
    )


def pool_names(server: Server) -> list[str]:
    with bench_connect(server.url, "poolnames") as conn:
        return [e.schema for e in pool.list_pool(conn, "bench") if e.state == "ready"]


def clear_pool(server: Server) -> list[str]:
    """Drop any pool schema a failed claimer left behind; return their names."""
    namespace = fresh().token
    label = naming.connection_label(naming.MAIN_WORKER, namespace, "poolctl")
    with psycopg.connect(server.url, autocommit=True, application_name=label) as conn:
        entries = pool.list_pool(conn, "bench")
        if entries:
            lease = Lease.open(server.control_url, namespace, "pool", "auto", 5)
            try:
                for entry in entries:
                    pool.drop(conn, entry, lease, namespace)
            finally:
                lease.close()
    return [e.schema for e in entries]


def existing(conn: psycopg.Connection[Any], names: list[str]) -> list[str]:
    rows = conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s) ORDER BY 1", (names,)
    ).fetchall()
    return [str(r[0]) for r in rows]


def drop_leftovers(url: str, names: list[str], specs: list[Spec]) -> list[str]:
    """Drop whichever of ``names`` still exist, one per transaction; return them.

    A killed worker's backend can still hold locks: those of this bench's own
    connections (matched by their labels) are ended before retrying.
    """
    patterns = label_patterns(specs)
    with bench_connect(url, "cleanup") as conn:
        found = existing(conn, names)
        for name in found:
            for attempt in range(3):
                try:
                    with conn.transaction():
                        conn.execute("SET LOCAL lock_timeout = '10s'")
                        conn.execute(
                            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
                        )
                    break
                except psycopg.errors.LockNotAvailable:
                    if attempt == 2:
                        raise
                    conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE pid <> pg_backend_pid() AND datname = current_database()"
                        " AND application_name LIKE ANY(%s)",
                        (patterns,),
                    )
    return found


def warm_up(server: Server, tables: int) -> tuple[float, int, int, int]:
    """One create_all alone (seconds, locks held at commit), its drop's lock count, and
    shoal's estimate of the footprint (what it records per fingerprint after a build)."""
    metadata = build_metadata(tables)
    bound = conninfo.with_params(server.url, options=f"-c search_path={WARMUP_SCHEMA}")
    engine = create_engine(sqlalchemy_url(bound), poolclass=NullPool)
    count = "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()"
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {WARMUP_SCHEMA} CASCADE")
            conn.exec_driver_sql(f"CREATE SCHEMA {WARMUP_SCHEMA}")
        started = time.perf_counter()
        with engine.begin() as conn:
            metadata.create_all(conn)
            create_locks = int(conn.exec_driver_sql(count).scalar_one())
        elapsed = time.perf_counter() - started
        with bench_connect(server.url, "footprint") as measuring:
            estimate = verify.lock_footprint(measuring, WARMUP_SCHEMA)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {WARMUP_SCHEMA} CASCADE")
            drop_locks = int(conn.exec_driver_sql(count).scalar_one())
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {WARMUP_SCHEMA} CASCADE")
        engine.dispose()
    return elapsed, create_locks, drop_locks, estimate


# -- reporting -----------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ms(value: float | None) -> str:
    """Whole milliseconds, with a decimal below 10 ms (claims and renames live there)."""
    if value is None:
        return "—"
    return f"{value * 1000:.1f}" if value < 0.01 else f"{value * 1000:,.0f}"


HEADER = (
    f"{'mode':<6} {'ok/n':>6} {'err':>4} {'clob':>4} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}"
    f" {'span s':>6} {'drop p50 ms':>11} {'slots peak/queued':>17} {'peak locks':>10}"
)


def values(results: list[WorkerResult], name: str) -> list[float]:
    return [v for r in results if (v := getattr(r, name)) is not None]


def p50_p95(results: list[WorkerResult], name: str) -> str:
    found = values(results, name)
    return f"{ms(percentile(found, 0.5))}/{ms(percentile(found, 0.95))}"


def mode_row(run: ModeRun) -> str:
    results = run.results
    latencies = values(results, "provision_s")
    drops = [r.teardown_s for r in results if r.teardown_s is not None and not r.errors]
    ok = sum(1 for r in results if not r.errors and not r.clobbered)
    slots = "n/a"
    if run.mode in ("shoal", "pool"):
        queued = run.held_while_queued
        slots = f"{run.peak_slots}/" + (f"{statistics.mean(queued):.1f}" if queued else "—")
    return (
        f"{run.mode:<6} {f'{ok}/{len(results)}':>6} {sum(len(r.errors) for r in results):>4}"
        f" {sum(r.clobbered for r in results):>4} {ms(percentile(latencies, 0.5)):>8}"
        f" {ms(percentile(latencies, 0.95)):>8} {ms(max(latencies, default=None)):>8}"
        f" {run.span_s:>6.1f} {ms(statistics.median(drops) if drops else None):>11}"
        f" {slots:>17} {run.peak_locks:>10,}"
    )


def steps_row(run: ModeRun) -> str:
    """Where the provisioning time went, p50/p95 ms."""
    results = run.results
    if run.mode == "floor":
        return f"  floor steps p50/p95 ms: bare rename {p50_p95(results, 'create_s')}"
    if run.mode == "pool":
        claimed = sum(r.claimed for r in results)
        return (
            f"  pool steps p50/p95 ms: claimed {claimed}/{len(results)}, claim (rename +"
            f" comment) {p50_p95(results, 'create_s')}, slot wait {p50_p95(results, 'slot_wait_s')}"
        )
    wait = f"slot wait {p50_p95(results, 'slot_wait_s')}, " if run.mode == "shoal" else ""
    return (
        f"  {run.mode} steps p50/p95 ms: {wait}create schema {p50_p95(results, 'create_s')},"
        f" create_all {p50_p95(results, 'setup_s')}"
    )


def ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def scenario_report(scenario: Scenario, runs: list[ModeRun], tables: int) -> list[str]:
    workers = scenario.invocations * scenario.workers
    lines = [
        f"scenario {scenario.label}: {scenario.invocations} invocation(s) x {scenario.workers}"
        f" workers = {workers} processes, {tables} tables each",
        HEADER,
        *(mode_row(run) for run in runs),
        *(steps_row(run) for run in runs),
    ]
    lat = {run.mode: values(run.results, "provision_s") for run in runs}
    for other in ("naive", "unique"):
        if "shoal" in lat and other in lat:
            p50 = ratio(percentile(lat["shoal"], 0.5), percentile(lat[other], 0.5))
            p95 = ratio(percentile(lat["shoal"], 0.95), percentile(lat[other], 0.95))
            lines.append(f"shoal/{other} latency: p50 {p50}, p95 {p95} (below 1 = shoal faster)")
    if "pool" in lat and "shoal" in lat:
        pool_p = [percentile(lat["pool"], q) for q in (0.5, 0.95)]
        shoal_p = [percentile(lat["shoal"], q) for q in (0.5, 0.95)]
        lines.append(
            f"warm pool vs building in place: {ratio(shoal_p[0], pool_p[0])} faster at p50,"
            f" {ratio(shoal_p[1], pool_p[1])} at p95"
        )
    if "pool" in lat and "floor" in lat:
        pool_p = [percentile(lat["pool"], q) for q in (0.5, 0.95)]
        floor_p = [percentile(lat["floor"], q) for q in (0.5, 0.95)]
        lines.append(
            f"claim vs its bare rename: {ratio(pool_p[0], floor_p[0])} the floor at p50,"
            f" {ratio(pool_p[1], floor_p[1])} at p95"
        )
    for run in runs:
        counts = Counter(": ".join(e.split(": ")[:2]) for r in run.results for e in r.errors)
        if counts:
            listed = "; ".join(f"{n}x {kind}" for kind, n in counts.most_common())
            lines.append(f"{run.mode} errors: {listed}")
        if run.peak_foreign_slots:
            lines.append(
                f"{run.mode}: other clients held up to {run.peak_foreign_slots} DDL slot(s)"
                " on this server meanwhile"
            )
        if run.leftovers:
            lines.append(f"{run.mode} leftovers dropped by the bench: {len(run.leftovers)}")
    return lines


LEGEND = (
    "latency: barrier release -> the worker's schema is ready (failed workers are not in the"
    " percentiles);\nspan: release -> last schema ready; clob: workers whose schema was"
    " replaced or lost tables;\ndrop: teardown, with its slot wait; slots peak/queued: most DDL"
    " slots held at once / mean held\nwhile a worker queued for one; peak locks: most pg_locks"
    " rows in the cluster, sampled every 20 ms"
)


def server_report(
    server: Server, warm: tuple[float, int, int], tables: int, ddl_slots: int | str
) -> list[str]:
    capacity = server.max_locks * (server.max_connections + server.max_prepared)
    return [
        f"server: PostgreSQL {server.version} at {conninfo.mask(server.url)}",
        f"lock table: max_locks_per_transaction {server.max_locks} x (max_connections "
        f"{server.max_connections} + max_prepared_transactions {server.max_prepared})"
        f" = {capacity:,}",
        f"DDL slots in use: {ddl_slots if ddl_slots != 'auto' else server.slots}  (auto would be"
        f" max(1, min({MAX_AUTO_SLOTS}, {capacity:,} / 2 / {LOCKS_PER_DDL:,})) = {server.slots})",
        f"one create_all of {tables} tables alone: {ms(warm[0])} ms, {warm[1]:,} locks held at"
        f" commit; DROP SCHEMA CASCADE of it: {warm[2]:,} locks",
        LEGEND,
    ]


# -- entry point ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="server to use (default: the embedded server)")
    parser.add_argument("--database", default="shoal_bench", help="dedicated bench database")
    parser.add_argument("--tables", type=int, default=220, help="tables per worker schema")
    parser.add_argument(
        "--scenarios",
        type=parse_scenarios,
        default=parse_scenarios("1x2,4x2,8x2"),
        help="comma-separated IxW: I invocations of W workers each (default 1x2,4x2,8x2)",
    )
    parser.add_argument(
        "--modes",
        type=parse_modes,
        default=parse_modes(DEFAULT_MODES),
        help=f"comma-separated subset of {', '.join(MODES)} (default {DEFAULT_MODES})",
    )
    parser.add_argument(
        "--ddl-slots", type=parse_slots, default="auto", help="shoal mode's ddl_slots (N or auto)"
    )
    parser.add_argument(
        "--no-footprint",
        action="store_true",
        help="size auto DDL slots without a recorded footprint (a setup's first build)",
    )
    parser.add_argument("--hold", type=float, default=1.0, help="seconds a worker keeps its schema")
    parser.add_argument("--worker-timeout", type=float, default=150.0, help="seconds per worker")
    parser.add_argument(
        "--jitter", type=float, default=0.0, help="each worker starts up to this many s late"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per scenario and mode, pooled (order alternates)",
    )
    return parser.parse_args(argv)


def target_capacity(server: Server) -> int:
    return server.max_locks * (server.max_connections + server.max_prepared)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["sqlalchemy", "psycopg", "shoal.pg.worker"])
    server = describe_server(prepare_database(args.url, args.database))
    started = time.monotonic()
    print(f"machine: {machine()}", flush=True)
    warm = warm_up(server, args.tables)
    args.footprint = warm[3]
    print("\n".join(server_report(server, warm[:3], args.tables, args.ddl_slots)), flush=True)
    slots = slot_count(args.ddl_slots, target_capacity(server), args.footprint)
    unknown = slot_count(args.ddl_slots, target_capacity(server))
    used = "without it (--no-footprint)" if args.no_footprint else "with it"
    print(
        f"lock footprint of a {args.tables}-table build, as shoal records it: {warm[3]}"
        f" (measured: {warm[1]} at create commit, {warm[2]} at drop); auto DDL slots with"
        f" it: {slots}, without it: {unknown}; this run sizes them {used}",
        flush=True,
    )
    names = {WARMUP_SCHEMA}
    try:
        for index, scenario in enumerate(args.scenarios):
            runs = run_scenario(scenario, args.modes, server, args, names, first=index)
            print("\n" + "\n".join(scenario_report(scenario, runs, args.tables)), flush=True)
    finally:
        # Every run dropped its own leftovers; this catches an interrupted one.
        drop_leftovers(server.url, sorted(names), [])
        with bench_connect(server.url, "cleanup") as conn:
            remaining = existing(conn, sorted(names))
        print(f"\ntotal {time.monotonic() - started:.0f} s; machine: {machine()}")
        print(f"bench schemas left behind: {', '.join(remaining) or 'none'}", flush=True)
    return 1 if remaining else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
