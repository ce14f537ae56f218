"""The warm pool: ready-made schemas per (database, setup fingerprint), claimed by rename.

Building a 220-table schema takes seconds; renaming one takes milliseconds. So schemas
are built ahead of time, inside DDL slots, under a *building* name
(``shoalbuild_<fp12>_<token>``) and published by renaming them to their *ready* name
(``shoalpool_<fp12>_<token>``) in the same transaction that writes their "ready" owner
comment: a schema under a ready name is complete by construction, and a half-built one
can never be claimed.

A worker claims one by renaming it to its own ``test_<ns>_<worker>`` and writing its
owner comment, in one statement (a DO block: one transaction) that first takes a
transaction advisory lock on the pool schema's name and then checks the schema is still
there. Whether it is ready, and of which fingerprint, was read from its comment when it
was listed: a ready name keeps the comment it was published with until it leaves that
name (claimed, or taken out for a drop). The lock lives in the pool's own database,
which every claimer on every host connects to, so two claimers of the same schema are
serialised and the second finds it gone. Dropping a pool
schema (the sweep, ``shoal pool clear``) first takes it out the same way, renaming it
back to a building name, so a drop and a claim can never both get it.

pg_namespace has no row locks to ``SKIP LOCKED`` on; the try-lock plays that part.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from psycopg import sql

from shoal import naming, setups
from shoal.binding import DatabaseHandle
from shoal.errors import SetupError
from shoal.pg import schemas, verify
from shoal.pg.connect import admin_connect
from shoal.pg.slots import TRY_LOCK, UNLOCK, Lease, slot_count
from shoal.plan import Target

Conn = psycopg.Connection[tuple[Any, ...]]
State = Literal["building", "ready", "dropping"]
# Whose rules decide which pool schemas go: the sweep's (stale fingerprints and dead
# builders, past the grace period) or `shoal pool clear`'s (every ready schema, and
# half-built ones whose builder is gone, at once).
Policy = Literal["sweep", "clear"]
Reason = Literal[
    "live",
    "too_young",
    "not_shoal",
    "active_detection_incomplete",
    "pool_current",
    "pool_fingerprint_unknown",
    "pool_foreign",
]
# Another project's ready pool schemas are dropped by a sweep once this old (7 days).
FOREIGN_POOL_S = 7 * 86400.0
NAMED_STARTING = """
SELECT nspname, obj_description(oid, 'pg_namespace') FROM pg_namespace
WHERE starts_with(nspname, %s)
"""
# A function of the schema whose body or settings spell out the schema's name.
FUNCTION_NAMING = """
SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = %s AND (strpos(p.prosrc, %s) > 0
  OR strpos(coalesce(array_to_string(p.proconfig, ' '), ''), %s) > 0)
LIMIT 1
"""
# A claim is a catalog update of one row; it should never wait long behind anything.
CLAIM_LOCK_TIMEOUT = "2s"


@dataclass(frozen=True)
class PoolSchema:
    """One pool schema as listed in a database."""

    database: str
    schema: str
    fingerprint: str  # full, from the owner comment ("" when the comment is not shoal's)
    state: State | None  # None: the owner comment is missing or not shoal's
    namespace: str | None  # who built it (or is dropping it)
    created: datetime | None
    shape: verify.Shape | None = None  # what a ready one holds, as its build recorded it
    project: str | None = None  # whose pool it is (None: written before pools had owners)


def pool_comment(
    state: State,
    fingerprint: str,
    namespace: str,
    now: datetime | None = None,
    shape: verify.Shape | None = None,
    project: str | None = None,
) -> str:
    """The owner comment of a pool schema (a ready one records what it holds); ``project``
    (:func:`shoal.naming.project_key`) is the project whose pool it is."""
    data: dict[str, object] = {
        "shoal": 1,
        "pool": state,
        "fingerprint": fingerprint,
        "namespace": namespace,
        **schemas.process_identity(),
        "created": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
    }
    if shape is not None:
        data["shape"] = shape.as_json()
    if project is not None:
        data["project"] = project
    return json.dumps(data, sort_keys=True)


def parse_pool(database: str, schema: str, comment: str | None) -> PoolSchema | None:
    """A pool schema from its name and comment; None when the name is not a pool name.

    A comment that is not shoal's, or whose fingerprint does not match the name, leaves
    the state unknown: the sweep then keeps it.
    """
    name = naming.parse_pool_schema(schema)
    if name is None:
        return None
    data = schemas.parse_owner_comment(comment) or {}
    state, fingerprint = data.get("pool"), data.get("fingerprint")
    namespace = data.get("namespace")
    valid = (
        state in ("building", "ready", "dropping")
        and isinstance(fingerprint, str)
        and naming.fingerprint_matches(name, fingerprint)
        # Only a ready schema carries a ready name; building and dropping ones do not.
        and (state == "ready") == name.ready
    )
    if not valid:
        return PoolSchema(database, schema, "", None, None, None)
    return PoolSchema(
        database=database,
        schema=schema,
        fingerprint=str(fingerprint),
        state=state,
        namespace=namespace if isinstance(namespace, str) else None,
        created=schemas.created_at(data),
        shape=verify.Shape.from_json(data.get("shape")),
        project=str(data["project"]) if isinstance(data.get("project"), str) else None,
    )


def list_pool(conn: Conn, database: str) -> list[PoolSchema]:
    """Every pool schema in the database ``conn`` is connected to, ready or not."""
    found = []
    for like in (naming.POOL_READY_LIKE, naming.POOL_BUILD_LIKE):
        for schema, comment in schemas.list_schemas(conn, like):
            entry = parse_pool(database, schema, comment)
            if entry is not None:
                found.append(entry)
    return found


def recorded_footprint(conn: Conn, fingerprint: str) -> int | None:
    """The lock footprint a recorded build of ``fingerprint`` measured, if any."""
    shape = recorded_shape(conn, fingerprint)
    return shape.locks if shape is not None and shape.locks else None


def recorded_shape(conn: Conn, fingerprint: str) -> verify.Shape | None:
    """What earlier builds of ``fingerprint`` in this database hold, if one recorded it."""
    for entry in list_pool(conn, ""):
        if entry.state == "ready" and entry.fingerprint == fingerprint and entry.shape:
            return entry.shape
    return None


def ready_schemas(conn: Conn, fingerprint: str) -> list[str]:
    return [
        p.schema for p in list_pool(conn, "") if p.state == "ready" and p.fingerprint == fingerprint
    ]


# One claim, in one statement: a DO block runs in its own transaction, and each statement
# in it gets a fresh snapshot, so the check after the lock sees any claim committed
# before. The check is a query, not a catalog-cache lookup (to_regnamespace), which
# could still see a rename another claimer committed a moment ago. It asks only whether
# the schema is still there: reading and parsing its comment again, which the listing
# did already, was 0.25 ms of the server's 0.9 ms for a claim.
# The block is given every candidate and takes the first it can, so a claimer that loses
# a race to another moves on inside the server, in microseconds, instead of in another
# round trip: with 8 claimers released at once and one ready schema each, half of them
# lost at least one race, and each loss cost a round trip of 1-20 ms on a busy 2-core
# machine. A DO block returns nothing, so the outcome comes back as a notice: a lost race
# is routine when workers claim at once, and an exception would put an ERROR line in the
# server's log for each one.
_TAKE = """
DECLARE
  names text[] := {names};
  keys int[] := {keys};
BEGIN
  SET LOCAL lock_timeout = {lock_timeout};
  SET LOCAL client_min_messages = notice;
  FOR i IN 1 .. coalesce(array_length(names, 1), 0) LOOP
    CONTINUE WHEN NOT pg_try_advisory_xact_lock({class_key}, keys[i]);
    PERFORM FROM pg_namespace WHERE nspname = names[i];
    CONTINUE WHEN NOT FOUND;
    EXECUTE format('ALTER SCHEMA %I RENAME TO %I', names[i], {new_name});
    EXECUTE format('COMMENT ON SCHEMA %I IS %L', {new_name},
      replace({comment}, {placeholder}, to_jsonb(names[i])::text));
    RAISE NOTICE '{outcome}%', names[i];
    RETURN;
  END LOOP;
END
"""
_OUTCOME = "shoal pool take: "  # the prefix of the notice that names the schema taken
# In a comment given to take_first: stands for the name of the schema taken (as a JSON
# string), so that a claimed schema's owner comment can say which pool schema it was.
POOLED = "__shoal_pooled__"
# What a take raises when the rename waited out its lock_timeout, or the schema went
# away between the check and the rename (a sweep): not taken either, and rare enough to
# be logged.
_NOT_TAKEN = (psycopg.errors.LockNotAvailable, psycopg.errors.InvalidSchemaName)


@dataclass(frozen=True)
class Take:
    """One claim, composed ahead: the DO block that tries ``names`` in this order.

    Composing it is client-side work (quoting every candidate, the comment, the block)
    that cost about as much as the server's part of a claim: with 8 claimers released at
    once on 2 cores, a claim composed off the clock took 2.0 ms at p50 against 3.1 ms
    composed on it. So a worker composes its claim while it prepares.
    """

    names: tuple[str, ...]
    statement: bytes


def compose_take(conn: Conn, names: Sequence[str], new_name: str, comment: str) -> Take:
    """The claim that renames the first of ``names`` (ready pool schemas, as
    :func:`candidate_names` lists them) still there and nobody else is taking to
    ``new_name``.

    ``comment`` becomes the renamed schema's comment, the JSON string ``"POOLED"`` in it
    replaced by the name taken.
    """
    class_key = naming.pool_claim_lock("")[0]
    body = sql.SQL(_TAKE).format(
        names=sql.Literal(list(names)),
        keys=sql.Literal([naming.pool_claim_lock(name)[1] for name in names]),
        lock_timeout=sql.Literal(CLAIM_LOCK_TIMEOUT),
        class_key=sql.Literal(class_key),
        new_name=sql.Literal(new_name),
        comment=sql.Literal(comment),
        placeholder=sql.Literal(json.dumps(POOLED)),
        outcome=sql.SQL(_OUTCOME),
    )
    statement = sql.SQL("DO {}").format(sql.Literal(body.as_string(conn))).as_bytes(conn)
    return Take(tuple(names), statement)


def run_take(conn: Conn, take: Take) -> str | None:
    """Run a composed claim; the name taken, or None.

    Raises DuplicateSchema when the new name exists already.
    """
    taken: list[str] = []

    def on_notice(diagnostic: psycopg.errors.Diagnostic) -> None:
        message = diagnostic.message_primary or ""
        if message.startswith(_OUTCOME):
            taken.append(message.removeprefix(_OUTCOME))

    conn.add_notice_handler(on_notice)
    try:
        conn.execute(take.statement)
    except _NOT_TAKEN:
        return None
    finally:
        conn.remove_notice_handler(on_notice)
    return taken[0] if taken else None


def take_first(conn: Conn, names: Sequence[str], new_name: str, comment: str) -> str | None:
    """Atomically rename the first of ``names`` (ready pool schemas, as listed) still there
    and nobody else is taking to ``new_name``; the name taken, or None.

    Composed and run at once (see :class:`Take`). Raises DuplicateSchema when
    ``new_name`` exists already.
    """
    return run_take(conn, compose_take(conn, names, new_name, comment))


def take(conn: Conn, schema: str, new_name: str, comment: str) -> bool:
    """Atomically rename the listed ready pool schema ``schema`` to ``new_name``; False
    if it is gone or being taken. Raises DuplicateSchema when ``new_name`` exists already.
    """
    return take_first(conn, [schema], new_name, comment) == schema


def rehearse_claim(conn: Conn, fingerprint: str, new_name: str, comment: str) -> bool:
    """Run one claim off the clock, on a scratch pool schema that is rolled back.

    A backend's first claim costs several times what the rename does: loading PL/pgSQL,
    filling the catalog caches of pg_namespace and pg_description (and their indexes)
    for reading and writing, planning the check. Measured with 8 claimers released at
    once on 2 cores, a rehearsed claim took 3.3 ms at p50 against 8.3 ms for a cold one
    (a bare rename: 1.0 ms). Nothing of it stays: the scratch schema never commits, so no
    other session ever sees it. Best effort (a claim works without it): True when the
    rehearsed claim went through.
    """
    scratch = naming.pool_schema_name(fingerprint, os.urandom(4).hex(), ready=True)
    ready = pool_comment("ready", fingerprint, "rehearsal")
    try:
        with conn.transaction(force_rollback=True):
            schemas.create_schema(conn, scratch, ready)
            return take(conn, scratch, new_name, comment)
    except psycopg.Error:
        return False


def compose_claim(conn: Conn, fingerprint: str, schema: str, comment: str) -> Take | None:
    """Compose, off the clock, a claim of a ready schema of ``fingerprint`` as ``schema``.

    The candidates are listed now and tried in random order, so that concurrent claimers
    spread out instead of all contending for the oldest one; they may be stale by the
    time the claim runs, which costs nothing (it passes over them). None when there is
    no candidate.
    """
    names = candidate_names(conn, fingerprint)
    random.shuffle(names)
    return compose_take(conn, names, schema, comment) if names else None


def claim(
    conn: Conn,
    fingerprint: str,
    schema: str,
    comment: Callable[[str], str],
    ahead: Take | None = None,
) -> str | None:
    """Claim a ready schema of ``fingerprint`` as ``schema``; the pool name taken, or None.

    ``comment`` gives the claimed schema's owner comment from the pool name it had.
    ``ahead``: the claim composed off the clock (:func:`compose_claim`); when none of its
    candidates could be taken, the catalog is listed again, in random order. A leftover
    ``schema`` (a crashed worker of this run) makes the rename fail and the claim give
    way to an in-place build, which replaces it.
    """
    tried = ahead.names if ahead is not None else ()
    try:
        taken = run_take(conn, ahead) if ahead is not None else None
        if taken is not None:
            return taken
        names = [n for n in candidate_names(conn, fingerprint) if n not in tried]
        random.shuffle(names)
        return take_first(conn, names, schema, comment(POOLED)) if names else None
    except psycopg.errors.DuplicateSchema:
        return None


def candidate_names(conn: Conn, fingerprint: str) -> list[str]:
    """The ready schemas of ``fingerprint``, by name and comment; :func:`take` checks
    under its lock that each is still there. One catalog query."""
    rows = conn.execute(NAMED_STARTING, (naming.pool_ready_prefix(fingerprint),)).fetchall()
    entries = [parse_pool("", str(name), comment) for name, comment in rows]
    return [e.schema for e in entries if e and e.state == "ready" and e.fingerprint == fingerprint]


def build(
    target: Target,
    fingerprint: str,
    lease: Lease,
    namespace: str,
    tail: tuple[str, ...],
    project: str | None = None,
) -> str:
    """Build one ready schema for ``target`` inside a DDL slot; return its name.

    Built under a building name, with the search path bound to it alone (plus the tail),
    and published by rename only once the setup has finished. On any failure the
    half-built schema is dropped again.
    """
    token = os.urandom(4).hex()
    building = naming.pool_schema_name(fingerprint, token, ready=False)
    ready = naming.pool_schema_name(fingerprint, token, ready=True)
    label = naming.connection_label(naming.MAIN_WORKER, namespace, "pool")
    # The building schema's binding: the setup's own connections (an env.py that reads
    # DATABASE_URL) land in it, exactly as they would in a worker's schema.
    handle = DatabaseHandle(
        name=target.name,
        schema=building,
        search_path=(building, *tail),
        label=label,
        base_url=target.url,
        export_env=target.export_env,
        scheme=target.scheme,
    )
    with lease.ddl_slot(naming.MAIN_WORKER), admin_connect(target.url, label) as conn:
        schemas.create_schema(conn, building, pool_comment("building", fingerprint, namespace))
        try:
            shape = None
            if target.setup is not None:
                before = verify.outside(conn)
                setups.run(target.setup, handle)
                shape = verify.check(
                    conn,
                    schema=building,
                    database=target.name,
                    spec=target.setup.spec,
                    before=before,
                    expected=recorded_shape(conn, fingerprint),
                )
            _refuse_embedded_name(conn, building, target.name)
            with conn.transaction():
                conn.execute(
                    sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                        sql.Identifier(building), sql.Identifier(ready)
                    )
                )
                conn.execute(
                    sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
                        sql.Identifier(ready),
                        sql.Literal(
                            pool_comment(
                                "ready", fingerprint, namespace, shape=shape, project=project
                            )
                        ),
                    )
                )
        except BaseException:
            schemas.drop_schema_chunked(conn, building)
            raise
    return ready


def _refuse_embedded_name(conn: Conn, schema: str, database: str) -> None:
    """Refuse a setup whose functions spell out their schema's name.

    Tables, views, defaults, sequences and triggers refer to each other by OID and move
    with a rename; a function body or a function's ``SET search_path`` is text, and would
    still point at the pool name after a worker claimed the schema.
    """
    row = conn.execute(FUNCTION_NAMING, (schema, schema, schema)).fetchone()
    if row is not None:
        raise SetupError(
            f"database {database!r}: function {row[0]!r} names its schema {schema!r} in its "
            "text, so a pooled copy would keep pointing at the pool name after a claim; "
            "write unqualified names, or set pool_size = 0"
        )


@dataclass
class WarmResult:
    database: str
    fingerprint: str
    ready_before: int
    built: list[str]
    ready_after: int
    skipped: str | None = None  # why nothing was built (another refill holds the lock)


def warm(
    target: Target,
    fingerprint: str,
    size: int,
    *,
    namespace: str,
    tail: tuple[str, ...],
    ddl_slots: int | str,
    timeout: int,
    deadline: float,
    project: str | None = None,
) -> WarmResult:
    """Build ready schemas of ``fingerprint`` until ``size`` are ready (at most ``size``
    builds, none started after the monotonic ``deadline``).

    One refill per (database, fingerprint) at a time, across runs and hosts: a session
    advisory lock in the pool's database, tried, not waited for. Two refills started
    together therefore never build twice the pool, and the loser returns at once.
    """
    label = naming.connection_label(naming.MAIN_WORKER, namespace, "poolctl")
    with admin_connect(target.url, label, timeout=timeout) as conn:
        before = len(ready_schemas(conn, fingerprint))
        result = WarmResult(target.name, fingerprint, before, [], before)
        row = conn.execute(TRY_LOCK, naming.pool_refill_lock(fingerprint)).fetchone()
        if not (row and row[0]):
            result.skipped = "another refill of this pool is under way"
            return result
        # Lease before create (DESIGN invariant 4): the building schemas belong to this
        # namespace, live while the lease is held.
        slots: int | str = ddl_slots
        if ddl_slots == "auto" and target.lock_capacity:
            slots = slot_count("auto", target.lock_capacity, target.lock_footprint)
        lease = Lease.open(target.control_url, namespace, "pool", slots, timeout)
        try:
            while (
                len(result.built) < size
                and time.monotonic() < deadline
                and len(ready_schemas(conn, fingerprint)) < size
            ):
                result.built.append(build(target, fingerprint, lease, namespace, tail, project))
        finally:
            lease.close()
            conn.execute(UNLOCK, naming.pool_refill_lock(fingerprint))
        result.ready_after = len(ready_schemas(conn, fingerprint))
    return result


def drop(conn: Conn, entry: PoolSchema, lease: Lease, namespace: str) -> bool:
    """Drop one pool schema inside a DDL slot; False when a claimer got it first.

    A ready schema is first taken out of the pool exactly as a claim would take it.
    """
    schema = entry.schema
    if entry.state == "ready":
        name = naming.parse_pool_schema(schema)
        assert name is not None
        schema = naming.pool_schema_name(entry.fingerprint, name.token, ready=False)
        comment = pool_comment("dropping", entry.fingerprint, namespace)
        if not take(conn, entry.schema, schema, comment):
            return False
    with lease.ddl_slot(naming.MAIN_WORKER):
        schemas.drop_schema_chunked(conn, schema)
    return True


def decide(
    entry: PoolSchema,
    *,
    live: set[str],
    complete: bool,
    policy: Policy,
    now: datetime | None = None,
    grace_s: float = 0.0,
    current: frozenset[str] | None = None,
    project: str | None = None,
    foreign_after_s: float = FOREIGN_POOL_S,
) -> Reason | None:
    """Why ``entry`` stays, or None when it goes. Pure, and fail-closed: unknown stays.

    A ready schema goes under ``clear``; under ``sweep`` when its fingerprint is not
    among ``current`` (None: the current ones could not be computed, which keeps every
    ready schema). A half-built one (or one a dead run was dropping) goes when its
    builder's namespace is not live and every cluster answered. The sweep also waits
    out the grace period.

    Ready schemas of another ``project`` (two projects can share a database name, and
    their setups differ) are never cleared, and the sweep drops them only once they
    are older than ``foreign_after_s``: unclaimed that long, their project is gone.
    """
    if entry.state is None or (policy == "sweep" and entry.created is None):
        return "not_shoal"
    if not complete:
        return "active_detection_incomplete"
    age = None if entry.created is None or now is None else (now - entry.created).total_seconds()
    if entry.state == "ready":
        reason = _ready_stays(entry, policy, current, project, age, foreign_after_s)
    else:
        reason = "live" if entry.namespace is None or entry.namespace in live else None
    if reason is None and policy == "sweep" and age is not None and age < grace_s:
        return "too_young"
    return reason


def _ready_stays(
    entry: PoolSchema,
    policy: Policy,
    current: frozenset[str] | None,
    project: str | None,
    age: float | None,
    foreign_after_s: float,
) -> Reason | None:
    """Why a ready pool schema stays (see :func:`decide`), or None."""
    if project is not None and entry.project != project:
        unused_long = policy == "sweep" and age is not None and age >= foreign_after_s
        return None if unused_long else "pool_foreign"
    if policy == "clear":
        return None
    if current is None:
        return "pool_fingerprint_unknown"
    return "pool_current" if entry.fingerprint in current else None


@dataclass(frozen=True)
class PoolCount:
    """How many pool schemas one database holds for one fingerprint, by state."""

    database: str
    fingerprint: str  # the 12-digit prefix; "?" when the owner comment is unreadable
    ready: int
    building: int
    dropping: int

    def as_json(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "fingerprint": self.fingerprint,
            "ready": self.ready,
            "building": self.building,
            "dropping": self.dropping,
        }


def counts(entries: Iterable[PoolSchema]) -> list[PoolCount]:
    """Pool schemas counted per (database, fingerprint). Pure."""
    found: dict[tuple[str, str], dict[str, int]] = {}
    for entry in entries:
        key = (entry.database, entry.fingerprint[: naming.POOL_FINGERPRINT_CHARS] or "?")
        by_state = found.setdefault(key, {"ready": 0, "building": 0, "dropping": 0})
        by_state[entry.state or "building"] += 1
    return [PoolCount(db, fp, **by_state) for (db, fp), by_state in sorted(found.items())]


def clear(
    url: str,
    control_url: str,
    database: str,
    *,
    namespace: str,
    live: set[str],
    complete: bool,
    ddl_slots: int | str,
    timeout: int,
    project: str | None = None,
) -> tuple[int, int]:
    """Drop the pool schemas of one database that ``clear`` may drop: (dropped, left)."""
    dropped = kept = 0
    label = naming.connection_label(naming.MAIN_WORKER, namespace, "poolctl")
    with admin_connect(url, label, timeout=timeout) as conn:
        entries = list_pool(conn, database)
        if not entries:
            return 0, 0
        lease = Lease.open(control_url, namespace, "pool", ddl_slots, timeout)
        try:
            for entry in entries:
                stays = decide(entry, live=live, complete=complete, policy="clear", project=project)
                if stays is None and drop(conn, entry, lease, namespace):
                    dropped += 1
                else:
                    kept += 1
        finally:
            lease.close()
    return dropped, kept
