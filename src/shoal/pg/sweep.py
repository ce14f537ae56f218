"""Fail-closed cleanup of dead runs' schemas (DESIGN invariants 5 and 6).

First the live namespaces are collected from *every* cluster; if any cluster cannot
be reached, nothing is dropped anywhere (a run may hold its lease there). Otherwise a
schema is dropped only when its name parses, its owner metadata says shoal made it,
its namespace is not live, and it is older than the grace period. Each drop runs in
its own short transaction inside a DDL slot; a failed drop is recorded and the sweep
moves on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import psycopg

from shoal import naming
from shoal.errors import ShoalError
from shoal.namespace import fresh
from shoal.pg import conninfo, schemas
from shoal.pg.connect import admin_connect
from shoal.pg.live import ClusterLiveness, probe_clusters
from shoal.pg.slots import Lease, control_url

DEFAULT_GRACE_S = 120
SWEEP_HOLDER = "sweep"

Reason = Literal[
    "live", "too_young", "unparseable", "not_shoal", "active_detection_incomplete", "time_budget"
]


@dataclass(frozen=True)
class Found:
    """A schema that might be a worker schema, as listed in one database."""

    database: str
    schema: str
    comment: str | None


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
                name: {"dropped": o.dropped, "failed": o.failed, "skipped": o.skipped}
                for name, o in self.databases.items()
            },
        }


def decide(
    found: Found, live: set[str], detection_complete: bool, now: datetime, grace_s: float
) -> Decision:
    """Drop or keep one schema. Pure: every rule of the fail-closed policy is here."""
    parsed = naming.parse_schema(found.schema)
    if parsed is None:
        return Decision(found, False, "unparseable")
    owner = schemas.parse_owner_comment(found.comment)
    if owner is None or owner.get("namespace") != parsed.namespace:
        return Decision(found, False, "not_shoal")
    if not detection_complete:
        return Decision(found, False, "active_detection_incomplete")
    if parsed.namespace in live:
        return Decision(found, False, "live")
    try:
        created = datetime.fromisoformat(str(owner["created"]))
    except (KeyError, ValueError):
        return Decision(found, False, "not_shoal")
    if (now - created).total_seconds() < grace_s:
        return Decision(found, False, "too_young")
    return Decision(found, True)


def sweep(
    urls: dict[str, str],
    *,
    grace_s: float = DEFAULT_GRACE_S,
    dry_run: bool = False,
    timeout: int = 5,
    budget_s: float | None = None,
) -> SweepResult:
    """Sweep the databases ``urls`` (name → URL); see the module docstring for the rules."""
    started = time.monotonic()
    clusters = probe_clusters(list(urls.values()), timeout)
    reachable = {c.cluster for c in clusters if c.reachable}
    complete = len(reachable) == len(clusters)
    live = set().union(*(c.live for c in clusters)) if clusters else set()
    result = SweepResult(clusters=clusters, databases={}, dry_run=dry_run)
    now = datetime.now(UTC)
    leases: dict[str, Lease] = {}
    namespace = fresh().token
    try:
        for name, url in urls.items():
            outcome = result.databases.setdefault(name, DatabaseOutcome())
            if conninfo.cluster_key(url) not in reachable:
                continue  # the cluster's error is in result.clusters
            with admin_connect(url, "shoal_sweep", timeout=timeout) as conn:
                listed = [Found(name, s, c) for s, c in schemas.list_schemas(conn)]
                for decision in (decide(f, live, complete, now, grace_s) for f in listed):
                    schema = decision.found.schema
                    if not decision.drop:
                        outcome.skipped.append({"schema": schema, "reason": str(decision.reason)})
                    elif budget_s is not None and time.monotonic() - started > budget_s:
                        outcome.skipped.append({"schema": schema, "reason": "time_budget"})
                    elif dry_run:
                        outcome.dropped.append(schema)
                    else:
                        _drop(conn, url, schema, namespace, leases, timeout, outcome)
    finally:
        for lease in leases.values():
            lease.close()
    return result


def _drop(
    conn: psycopg.Connection[tuple[object, ...]],
    url: str,
    schema: str,
    namespace: str,
    leases: dict[str, Lease],
    timeout: int,
    outcome: DatabaseOutcome,
) -> None:
    cluster = conninfo.cluster_key(url)
    try:
        if cluster not in leases:
            leases[cluster] = Lease.open(
                control_url(url, timeout), namespace, SWEEP_HOLDER, "auto", timeout
            )
        with leases[cluster].ddl_slot(naming.MAIN_WORKER):
            schemas.drop_schema_chunked(conn, schema)
        outcome.dropped.append(schema)
    except (psycopg.Error, ShoalError) as exc:
        outcome.failed.append({"schema": schema, "error": str(exc).strip().splitlines()[0]})
