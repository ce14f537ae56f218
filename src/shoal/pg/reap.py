"""The reaper: drops the schemas a run's workers renamed for dropping, after the run.

A worker ends by renaming each of its schemas to ``shoaldrop_<namespace>_<worker>_<token>``
(milliseconds, inside its lease) instead of dropping it (seconds, and thousands of locks
at once). The run then starts one reaper, detached, that drops them, each inside a DDL
slot and in transactions of its own (DESIGN invariants 6 and 7).

The reaper holds a lease labelled with the run's namespace, so a sweep sees the run live
while it works and leaves those schemas to it. Killed, its lease dies with it, and the
next sweep takes them: their names say the run is done with them, so no grace period.

What goes is decided by the sweep's rule (:func:`shoal.pg.sweep.decide`, ``reaping``):
the run's own to-drop schemas at once; other runs' to-drop schemas found in the same
databases once those runs are provably over. Two reapers (or a reaper and a sweep) never
fight over a schema: each drop first tries the schema's to-drop lock, and whoever does
not get it leaves the schema to whoever did.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from shoal import conninfo, naming

if TYPE_CHECKING:
    # Imported where the reaper runs, not where a run only hands it its order: the
    # run's controller is on its way out, and the sweep's imports cost ~0.2 s.
    import psycopg

    from shoal.pg.slots import Lease

REAPER = "reaper"  # the lease holder and DDL-slot worker of a reaper
# A drop that fails (a test left a session holding a lock on a table: lock timeout) is
# tried again on the next pass, a moment later; what still fails is left to the sweep.
PASSES = 3
PAUSE_S = 2.0


@dataclass(frozen=True)
class ReapTarget:
    """A database a run renamed schemas in."""

    database: str
    url: str
    control_url: str


@dataclass(frozen=True)
class ReapOrder:
    """What a run hands its reaper (through the environment: URLs stay out of argv)."""

    namespace: str
    targets: tuple[ReapTarget, ...]
    ddl_slots: int | str = "auto"
    timeout: int = 5
    after: int | None = None  # the pid of the run's process, waited for before dropping

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ReapOrder:
        data = json.loads(text)
        targets = tuple(ReapTarget(**t) for t in data.pop("targets"))
        order = cls(targets=targets, **data)
        if not naming.is_namespace(order.namespace):
            raise ValueError(f"{order.namespace!r} is not a namespace")
        return order


@dataclass
class ReapResult:
    dropped: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {"dropped": self.dropped, "skipped": self.skipped, "failed": self.failed}


def reap(order: ReapOrder, passes: int = PASSES, pause_s: float = PAUSE_S) -> ReapResult:
    """Drop the to-drop schemas ``order`` names the databases of, in up to ``passes``
    passes while drops fail; see the module docstring."""
    import time

    result = ReapResult()
    for attempt in range(passes):
        if attempt:
            time.sleep(pause_s)
        done = _reap_once(order)
        result.dropped += done.dropped
        result.skipped, result.failed = done.skipped, done.failed
        if not done.failed:
            break
    return result


def _reap_once(order: ReapOrder) -> ReapResult:
    import psycopg

    from shoal.errors import ShoalError, first_line
    from shoal.pg.connect import admin_connect
    from shoal.pg.live import probe_clusters
    from shoal.pg.sweep import plan_to_drop

    result = ReapResult()
    targets = list(dict.fromkeys(order.targets))
    clusters = {c.cluster: c for c in probe_clusters([t.url for t in targets], order.timeout)}
    complete = all(c.reachable for c in clusters.values())
    live = set().union(*(c.live for c in clusters.values()))
    leases: dict[str, Lease] = {}
    label = naming.connection_label(naming.MAIN_WORKER, order.namespace, "reap")
    try:
        for target in targets:
            liveness = clusters[conninfo.cluster_key(target.url)]
            if not liveness.reachable:
                error = liveness.error or "unreachable"
                result.failed.append({"schema": f"{target.database}.*", "error": error})
                continue
            try:
                with admin_connect(target.url, label, timeout=order.timeout) as conn:
                    decisions = plan_to_drop(
                        conn,
                        target.database,
                        live,
                        complete,
                        datetime.now(UTC),
                        0.0,
                        liveness.server_started,
                        reaping=order.namespace,
                    )
                    for decision in decisions:
                        schema = decision.found.schema
                        if not decision.drop:
                            result.skipped.append(
                                {"schema": schema, "reason": str(decision.reason)}
                            )
                            continue
                        _drop(conn, _lease(leases, target, order), schema, result)
            except (ShoalError, psycopg.Error) as exc:
                result.failed.append({"schema": f"{target.database}.*", "error": first_line(exc)})
    finally:
        for lease in leases.values():
            lease.close()
    return result


def _lease(leases: dict[str, Lease], target: ReapTarget, order: ReapOrder) -> Lease:
    """The reaper's lease in ``target``'s cluster, opened before its first drop there."""
    from shoal.pg.slots import Lease

    cluster = conninfo.cluster_key(target.url)
    if cluster not in leases:
        leases[cluster] = Lease.open(
            target.control_url, order.namespace, REAPER, order.ddl_slots, order.timeout
        )
    return leases[cluster]


def _drop(
    conn: psycopg.Connection[tuple[object, ...]], lease: Lease, schema: str, result: ReapResult
) -> None:
    import psycopg

    from shoal.errors import ShoalError, first_line
    from shoal.pg.sweep import drop_to_drop

    try:
        if drop_to_drop(conn, lease, schema, naming.MAIN_WORKER):
            result.dropped.append(schema)
        else:
            result.skipped.append({"schema": schema, "reason": "being_dropped"})
    except (ShoalError, psycopg.Error) as exc:
        result.failed.append({"schema": schema, "error": first_line(exc)})
