"""Fail-closed cleanup of dead runs' schemas (DESIGN invariants 5 and 6).

First the live namespaces are collected from *every* cluster; if any cluster cannot
be reached, nothing is dropped anywhere (a run may hold its lease there). Otherwise a
schema is dropped only when its name parses, its owner metadata says shoal made it,
its namespace is not live, and it is older than the grace period. Each drop runs in
its own short transaction inside a DDL slot; a failed drop is recorded and the sweep
moves on.

Template databases (Django's database mode) go by the rules of pool schemas: the
project's templates of a fingerprint that is no longer current, and half-built ones
whose builder is gone, never one being cloned from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg

from shoal import conninfo, naming
from shoal.errors import ShoalError, first_line
from shoal.namespace import fresh
from shoal.pg import databases, pool, schemas
from shoal.pg.connect import admin_connect
from shoal.pg.live import ClusterLiveness, owner_alive, probe_clusters
from shoal.pg.slots import Lease, control_url

DEFAULT_GRACE_S = 120
SWEEP_HOLDER = "sweep"

Reason = Literal[
    "live",
    "too_young",
    "unparseable",
    "not_shoal",
    "active_detection_incomplete",
    "time_budget",
    "pool_current",
    "pool_fingerprint_unknown",
    "pool_claimed",
    "owner_alive",
    "server_restarted",
    "pool_foreign",
    "being_dropped",
    "template_in_use",
]


@dataclass(frozen=True)
class Found:
    """A schema that might be a worker schema, as listed in one database."""

    database: str
    schema: str
    comment: str | None
    # "database": a worker's own database (Django's database mode), named in ``schema``;
    # "template": a template database worker databases are cloned from.
    kind: Literal["schema", "database", "template"] = "schema"


@dataclass(frozen=True)
class Decision:
    found: Found
    drop: bool
    reason: Reason | None = None


@dataclass
class DatabaseOutcome:
    dropped: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


@dataclass
class SweepResult:
    clusters: list[ClusterLiveness]
    databases: dict[str, DatabaseOutcome]
    dry_run: bool

    @property
    def detection_complete(self) -> bool:
        return all(c.reachable for c in self.clusters)

    @property
    def live(self) -> set[str]:
        return set().union(*(c.live for c in self.clusters)) if self.clusters else set()

    @property
    def ok(self) -> bool:
        """Everything that should have been dropped was."""
        return self.detection_complete and not any(
            o.failed or any(s["reason"] == "time_budget" for s in o.skipped)
            for o in self.databases.values()
        )

    def as_json(self) -> dict[str, object]:
        return {
            "clusters": [
                {"url": c.url, "reachable": c.reachable, "error": c.error} for c in self.clusters
            ],
            "live_namespaces": sorted(self.live),
            "active_detection_complete": self.detection_complete,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "databases": {
                name: {
                    "would_drop" if self.dry_run else "dropped": o.dropped,
                    "failed": o.failed,
                    "skipped": o.skipped,
                }
                for name, o in self.databases.items()
            },
        }


def decide(
    found: Found,
    live: set[str],
    detection_complete: bool,
    now: datetime,
    grace_s: float,
    *,
    server_started: datetime | None = None,
    alive: Callable[[Mapping[str, Any]], bool | None] = lambda owner: None,
    reaping: str | None = None,
) -> Decision:
    """Drop or keep one schema. Every rule of the fail-closed policy is here.

    No lease seen is not proof of death on its own: a server restart drops every lease
    while the runs go on. So a schema whose owner process still runs on this host
    (``alive``: True) is kept, and so is any schema while the server started less than
    the grace period ago (its owner, on another host, may not have reconnected yet).

    A to-drop schema (``shoaldrop_…``) was renamed by its own run, which is done with
    it: the reaper of that run (``reaping``: its namespace) drops it at once, live or
    not; anyone else drops it once its run is provably over, with no grace period.
    """
    to_drop = naming.parse_to_drop(found.schema)
    parsed = to_drop or naming.parse_schema(found.schema)
    if parsed is None:
        return Decision(found, False, "unparseable")
    owner = schemas.parse_owner_comment(found.comment)
    if owner is None or owner.get("namespace") != parsed.namespace:
        return Decision(found, False, "not_shoal")
    if to_drop is not None and reaping is not None and to_drop.namespace == reaping:
        return Decision(found, True)
    if not detection_complete:
        return Decision(found, False, "active_detection_incomplete")
    if parsed.namespace in live:
        return Decision(found, False, "live")
    if alive(owner):
        return Decision(found, False, "owner_alive")
    if server_started is not None and (now - server_started).total_seconds() < grace_s:
        return Decision(found, False, "server_restarted")
    if to_drop is not None:
        return Decision(found, True)
    created = schemas.created_at(owner)
    if created is None:
        return Decision(found, False, "not_shoal")
    if (now - created).total_seconds() < grace_s:
        return Decision(found, False, "too_young")
    return Decision(found, True)


def decide_pool(
    found: Found,
    live: set[str],
    detection_complete: bool,
    now: datetime,
    grace_s: float,
    current: frozenset[str] | None,
    project: str | None = None,
    foreign_after_s: float = pool.FOREIGN_POOL_S,
) -> Decision:
    """Drop or keep one pool schema, by the sweep's rules in :func:`shoal.pg.pool.decide`."""
    entry = pool.parse_pool(found.database, found.schema, found.comment)
    if entry is None:
        return Decision(found, False, "unparseable")
    return _pool_decision(
        found, entry, live, detection_complete, now, grace_s, current, project, foreign_after_s
    )


def _pool_decision(
    found: Found,
    entry: pool.PoolSchema,
    live: set[str],
    detection_complete: bool,
    now: datetime,
    grace_s: float,
    current: frozenset[str] | None,
    project: str | None,
    foreign_after_s: float,
) -> Decision:
    """The sweep's decision on a pool entry (a pool schema, or a template seen as one)."""
    reason = pool.decide(
        entry,
        live=live,
        complete=detection_complete,
        policy="sweep",
        now=now,
        grace_s=grace_s,
        current=current,
        project=project,
        foreign_after_s=foreign_after_s,
    )
    return Decision(found, reason is None, reason)


def plan(
    conn: psycopg.Connection[tuple[object, ...]],
    database: str,
    live: set[str],
    complete: bool,
    now: datetime,
    grace_s: float,
    current: frozenset[str] | None,
    server_started: datetime | None = None,
    project: str | None = None,
    foreign_after_s: float = pool.FOREIGN_POOL_S,
) -> list[Decision]:
    """What the sweep would do in one database: a decision for every schema it lists."""
    listed = [Found(database, s, c) for s, c in schemas.list_schemas(conn)]
    decisions = [
        decide(f, live, complete, now, grace_s, server_started=server_started, alive=owner_alive)
        for f in listed
    ]
    decisions += plan_to_drop(conn, database, live, complete, now, grace_s, server_started)
    for like in (naming.POOL_READY_LIKE, naming.POOL_BUILD_LIKE):
        for schema, comment in schemas.list_schemas(conn, like):
            found = Found(database, schema, comment)
            decisions.append(
                decide_pool(found, live, complete, now, grace_s, current, project, foreign_after_s)
            )
    return decisions


def plan_to_drop(
    conn: psycopg.Connection[tuple[object, ...]],
    database: str,
    live: set[str],
    complete: bool,
    now: datetime,
    grace_s: float,
    server_started: datetime | None = None,
    reaping: str | None = None,
) -> list[Decision]:
    """A decision for every to-drop schema in one database (see :func:`decide`)."""
    return [
        decide(
            Found(database, schema, comment),
            live,
            complete,
            now,
            grace_s,
            server_started=server_started,
            alive=owner_alive,
            reaping=reaping,
        )
        for schema, comment in schemas.list_schemas(conn, naming.TO_DROP_LIKE)
    ]


def drop_to_drop(
    conn: psycopg.Connection[tuple[object, ...]], lease: Lease, schema: str, worker: str
) -> bool:
    """Drop one to-drop schema inside a DDL slot; False when another reaper or sweep is
    dropping it (or has): the two never queue on the same schema's locks."""
    with schemas.claimed_for_drop(conn, schema) as mine:
        if not mine:
            return False
        with lease.ddl_slot(worker):
            schemas.drop_schema_chunked(conn, schema)
    return True


def decide_database(
    found: Found,
    live: set[str],
    detection_complete: bool,
    now: datetime,
    grace_s: float,
    *,
    server_started: datetime | None = None,
    alive: Callable[[Mapping[str, Any]], bool | None] = lambda owner: None,
) -> Decision:
    """Drop or keep one worker database: by :func:`decide`'s rules, exactly as the worker
    schema of the same namespace and worker with the same owner comment."""
    parsed = naming.parse_worker_database(found.schema)
    if parsed is None:
        return Decision(found, False, "unparseable")
    schema = naming.schema_name(parsed.namespace, parsed.worker)
    as_schema = Found(found.database, schema, found.comment)
    decision = decide(
        as_schema,
        live,
        detection_complete,
        now,
        grace_s,
        server_started=server_started,
        alive=alive,
    )
    return Decision(found, decision.drop, decision.reason)


def plan_databases(
    conn: psycopg.Connection[tuple[object, ...]],
    database: str,
    live: set[str],
    complete: bool,
    now: datetime,
    grace_s: float,
    server_started: datetime | None = None,
) -> list[Decision]:
    """A decision for every worker database on the server ``conn`` is connected to,
    reported under ``database`` (the listing that brought the server in)."""
    return [
        decide_database(
            Found(database, name, comment, kind="database"),
            live,
            complete,
            now,
            grace_s,
            server_started=server_started,
            alive=owner_alive,
        )
        for name, comment in databases.worker_databases(conn)
    ]


def decide_template(
    found: Found,
    live: set[str],
    detection_complete: bool,
    now: datetime,
    grace_s: float,
    current: frozenset[str] | None,
    project: str | None = None,
    foreign_after_s: float = pool.FOREIGN_POOL_S,
) -> Decision:
    """Drop or keep one template database: by the rules of a pool schema of the same
    fingerprint, state, builder and project (:func:`shoal.pg.pool.decide`). A template
    whose fingerprint is among ``current`` stays; None (the current fingerprints could
    not be computed) keeps every ready one."""
    template = databases.parse_template(found.schema, found.comment)
    if template is None:
        return Decision(found, False, "unparseable")
    entry = pool.PoolSchema(
        database=found.database,
        schema=template.name,
        fingerprint=template.fingerprint,
        state=template.state,
        namespace=template.namespace,
        created=template.created,
        project=template.project,
    )
    return _pool_decision(
        found, entry, live, detection_complete, now, grace_s, current, project, foreign_after_s
    )


def plan_templates(
    conn: psycopg.Connection[tuple[object, ...]],
    database: str,
    live: set[str],
    complete: bool,
    now: datetime,
    grace_s: float,
    current: frozenset[str] | None,
    project: str | None = None,
    foreign_after_s: float = pool.FOREIGN_POOL_S,
) -> list[Decision]:
    """A decision for every template database on the server ``conn`` is connected to.

    Templates are the server's, not one database's: another project's that stays is
    none of this sweep's business and is left out (one past ``foreign_after_s`` is
    dropped and reported)."""
    decisions = []
    for name, comment in databases.list_databases(conn, naming.TEMPLATE_LIKE):
        template = databases.parse_template(name, comment)
        if template is None:
            continue
        found = Found(database, name, comment, kind="template")
        decision = decide_template(
            found, live, complete, now, grace_s, current, project, foreign_after_s
        )
        theirs = project is not None and template.state is not None and template.project != project
        if decision.drop or not theirs:
            decisions.append(decision)
    return decisions


@dataclass
class _Dropper:
    """Carries out drop decisions: leases per cluster, opened on the first drop."""

    namespace: str
    ddl_slots: int | str
    timeout: int
    leases: dict[str, Lease] = field(default_factory=dict)

    def lease(self, url: str) -> Lease:
        cluster = conninfo.cluster_key(url)
        if cluster not in self.leases:
            self.leases[cluster] = Lease.open(
                control_url(url, self.timeout),
                self.namespace,
                SWEEP_HOLDER,
                self.ddl_slots,
                self.timeout,
            )
        return self.leases[cluster]

    def drop(
        self,
        conn: psycopg.Connection[tuple[object, ...]],
        url: str,
        found: Found,
        outcome: DatabaseOutcome,
    ) -> None:
        try:
            # The lease first: a ready schema taken out for dropping belongs to this
            # namespace, and a dead run's schema is dropped inside a DDL slot.
            lease = self.lease(url)
            if found.kind == "template":
                template = databases.parse_template(found.schema, found.comment)
                assert template is not None  # decided on the same name and comment
                label = naming.tool_label("sweep")
                with admin_connect(
                    control_url(url, self.timeout), label, timeout=self.timeout
                ) as c:
                    if not databases.drop_template(c, template, lease):
                        outcome.skipped.append(
                            {"schema": found.schema, "reason": "template_in_use"}
                        )
                        return
                outcome.dropped.append(found.schema)
                return
            if found.kind == "database":
                # One statement, outside any transaction; no FORCE: a session someone
                # opened on a dead run's database makes the drop fail, not vanish.
                with lease.ddl_slot(naming.MAIN_WORKER):
                    databases.drop_database(conn, found.schema, force=False)
                outcome.dropped.append(found.schema)
                return
            entry = pool.parse_pool(found.database, found.schema, found.comment)
            if entry is not None:
                if not pool.drop(conn, entry, lease, self.namespace):
                    outcome.skipped.append({"schema": found.schema, "reason": "pool_claimed"})
                    return
            elif naming.parse_to_drop(found.schema) is not None:
                if not drop_to_drop(conn, lease, found.schema, naming.MAIN_WORKER):
                    outcome.skipped.append({"schema": found.schema, "reason": "being_dropped"})
                    return
            else:
                with lease.ddl_slot(naming.MAIN_WORKER):
                    schemas.drop_schema_chunked(conn, found.schema)
            outcome.dropped.append(found.schema)
        except (psycopg.Error, ShoalError) as exc:
            outcome.failed.append({"schema": found.schema, "error": first_line(exc)})

    def close(self) -> None:
        for lease in self.leases.values():
            lease.close()


def sweep(
    urls: dict[str, str],
    *,
    grace_s: float = DEFAULT_GRACE_S,
    dry_run: bool = False,
    timeout: int = 5,
    budget_s: float | None = None,
    fingerprints: Mapping[str, str | None] | None = None,
    ddl_slots: int | str = "auto",
    project: str | None = None,
    foreign_after_s: float = pool.FOREIGN_POOL_S,
    templates: frozenset[str] | None = None,
) -> SweepResult:
    """Sweep the databases ``urls`` (name → URL); see the module docstring for the rules.

    ``fingerprints`` (name → current setup fingerprint, None for none) lets the sweep drop
    pool schemas of setups no longer current; a database missing from it keeps its ready
    pool schemas (unknown means current). ``ddl_slots``: the configured slot count.
    ``project``: whose sweep this is; other projects' ready pool schemas are kept until
    they are older than ``foreign_after_s``. ``templates``: the project's current template
    fingerprints (Django's database mode); the project's template databases of any other
    fingerprint are dropped, and None (not known) keeps them all.
    """
    started = time.monotonic()
    clusters = probe_clusters(list(urls.values()), timeout)
    reachable = {c.cluster for c in clusters if c.reachable}
    complete = len(reachable) == len(clusters)
    live = set().union(*(c.live for c in clusters)) if clusters else set()
    result = SweepResult(clusters=clusters, databases={}, dry_run=dry_run)
    now = datetime.now(UTC)
    dropper = _Dropper(fresh().token, ddl_slots, timeout)
    servers_listed: set[str] = set()  # worker databases are the server's: listed once
    try:
        for name, url in urls.items():
            outcome = result.databases.setdefault(name, DatabaseOutcome())
            if conninfo.cluster_key(url) not in reachable:
                continue  # the cluster's error is in result.clusters
            restarted = next(
                (c.server_started for c in clusters if c.cluster == conninfo.cluster_key(url)),
                None,
            )
            with admin_connect(url, naming.tool_label("sweep"), timeout=timeout) as conn:
                current = _current(fingerprints, name)
                decisions = plan(
                    conn,
                    name,
                    live,
                    complete,
                    now,
                    grace_s,
                    current,
                    restarted,
                    project,
                    foreign_after_s,
                )
                if conninfo.cluster_key(url) not in servers_listed:
                    servers_listed.add(conninfo.cluster_key(url))
                    decisions += plan_databases(conn, name, live, complete, now, grace_s, restarted)
                    decisions += plan_templates(
                        conn,
                        name,
                        live,
                        complete,
                        now,
                        grace_s,
                        templates,
                        project,
                        foreign_after_s,
                    )
                for decision in decisions:
                    schema = decision.found.schema
                    if not decision.drop:
                        outcome.skipped.append({"schema": schema, "reason": str(decision.reason)})
                    elif budget_s is not None and time.monotonic() - started > budget_s:
                        outcome.skipped.append({"schema": schema, "reason": "time_budget"})
                    elif dry_run:
                        outcome.dropped.append(schema)
                    else:
                        dropper.drop(conn, url, decision.found, outcome)
    finally:
        dropper.close()
    return result


def _current(fingerprints: Mapping[str, str | None] | None, name: str) -> frozenset[str] | None:
    if fingerprints is None or name not in fingerprints:
        return None
    value = fingerprints[name]
    return frozenset() if value is None else frozenset({value})
