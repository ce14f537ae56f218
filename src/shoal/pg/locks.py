"""Who is blocked by whom, and how full the lock table is, on every configured cluster.

``pg_stat_activity`` and ``pg_locks`` are cluster-wide, so each cluster is asked once,
through any configured database on it. Blocked sessions are not filtered to the
configured databases: DDL-slot waits happen in the control database (usually
``postgres``), and a lock storm there is exactly what this is for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from psycopg.rows import dict_row

from shoal import conninfo, naming
from shoal.errors import ServerUnreachable, first_line
from shoal.pg.connect import admin_connect
from shoal.pg.slots import LockSettings, lock_settings

QUERY_CHARS: Final = 120
# A prepared transaction holding a conflicting lock: pg_blocking_pids reports it as pid 0.
PREPARED_XACT_PID: Final = 0

# pg_blocking_pids takes the lock manager's partition locks; only call it for sessions
# that wait on a heavyweight lock, the only waits it knows about anyway. One row per
# (waiter, blocker); the blocker may have ended since, or be a prepared transaction,
# hence the LEFT JOIN.
BLOCKED_SQL: Final = """
WITH waiting AS (
    SELECT a.*, pg_blocking_pids(a.pid) AS blockers
    FROM pg_stat_activity a
    WHERE a.wait_event_type = 'Lock'
)
SELECT w.pid, w.application_name, w.usename AS user, w.datname AS database, w.state,
       w.query, w.wait_event_type, w.wait_event,
       extract(epoch FROM now() - coalesce(w.state_change, w.query_start))::float8 AS waited_s,
       bp.pid AS blocker_pid, b.application_name AS blocker_application_name,
       b.usename AS blocker_user, b.datname AS blocker_database, b.state AS blocker_state,
       b.query AS blocker_query, b.pid IS NOT NULL AS blocker_exists
FROM waiting w
CROSS JOIN LATERAL unnest(w.blockers) AS bp(pid)
LEFT JOIN pg_stat_activity b ON b.pid = bp.pid
ORDER BY w.pid, bp.pid
"""

HELD_SQL: Final = "SELECT count(*) FROM pg_locks"


def shorten(query: str | None, limit: int = QUERY_CHARS) -> str:
    """One line of at most ``limit`` characters, passwords masked."""
    text = " ".join((query or "").split())
    text = conninfo.mask(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@dataclass(frozen=True)
class Session:
    """One backend, as far as shoal can tell who it belongs to."""

    pid: int
    application_name: str | None = None
    user: str | None = None
    database: str | None = None
    state: str | None = None
    query: str = ""
    exists: bool = True  # False: gone since pg_blocking_pids looked, or a prepared xact
    run: str | None = None  # the namespace, for a labelled session
    worker: str | None = None  # gwN / main; for a lease, the worker holding it
    role: str | None = None  # "lease", or the label's suffix (admin, setup, …)

    @property
    def labelled(self) -> bool:
        return self.run is not None

    @property
    def prepared_transaction(self) -> bool:
        return self.pid == PREPARED_XACT_PID

    @classmethod
    def from_activity(
        cls,
        pid: int,
        application_name: str | None,
        user: str | None,
        database: str | None,
        state: str | None,
        query: str | None,
        exists: bool = True,
    ) -> Session:
        label = naming.parse_label(application_name or "")
        run = worker = role = None
        if label is not None and label.is_lease:
            # A lease's label carries its holder where other labels carry a suffix.
            run, worker, role = label.namespace, label.suffix, "lease"
        elif label is not None:
            run, worker, role = label.namespace, label.worker, label.suffix
        return cls(
            pid=pid,
            application_name=application_name,
            user=user,
            database=database,
            state=state,
            query=shorten(query),
            exists=exists,
            run=run,
            worker=worker,
            role=role,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "labelled": self.labelled,
            "run": self.run,
            "worker": self.worker,
            "role": self.role,
            "application_name": self.application_name,
            "user": self.user,
            "database": self.database,
            "state": self.state,
            "query": self.query,
            "exists": self.exists,
        }


@dataclass(frozen=True)
class Blocked:
    """A session waiting for a lock, and every session it waits for."""

    cluster: str
    waiting: Session
    blocked_by: tuple[Session, ...]
    wait_event_type: str | None
    wait_event: str | None
    waited_s: float | None

    def as_json(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "waiting": self.waiting.as_json(),
            "blocked_by": [s.as_json() for s in self.blocked_by],
            "wait_event_type": self.wait_event_type,
            "wait_event": self.wait_event,
            "waited_s": None if self.waited_s is None else round(self.waited_s, 3),
        }


@dataclass(frozen=True)
class LockPressure:
    held: int
    max_locks_per_transaction: int
    max_connections: int
    max_prepared_transactions: int

    @property
    def capacity(self) -> int:
        settings = LockSettings(
            self.max_locks_per_transaction, self.max_connections, self.max_prepared_transactions
        )
        return settings.capacity

    @property
    def percent(self) -> float:
        return 100.0 * self.held / self.capacity if self.capacity > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "held": self.held,
            "capacity": self.capacity,
            "percent": round(self.percent, 1),
            "max_locks_per_transaction": self.max_locks_per_transaction,
            "max_connections": self.max_connections,
            "max_prepared_transactions": self.max_prepared_transactions,
        }


@dataclass
class ClusterLocks:
    cluster: str
    url: str  # masked
    reachable: bool = False
    error: str | None = None
    blocked: list[Blocked] = field(default_factory=list)
    pressure: LockPressure | None = None


def _session(row: Mapping[str, Any], prefix: str = "", exists: bool = True) -> Session:
    return Session.from_activity(
        int(row[f"{prefix}pid"]),
        row[f"{prefix}application_name"],
        row[f"{prefix}user"],
        row[f"{prefix}database"],
        row[f"{prefix}state"],
        row[f"{prefix}query"],
        exists=exists,
    )


def diagnose(cluster: str, rows: Iterable[Mapping[str, Any]]) -> list[Blocked]:
    """Group BLOCKED_SQL's (waiter, blocker) rows into one entry per waiting session."""
    waiters: dict[int, tuple[Mapping[str, Any], list[Session]]] = {}
    for row in rows:
        blocker = _session(row, "blocker_", exists=bool(row["blocker_exists"]))
        waiters.setdefault(int(row["pid"]), (row, []))[1].append(blocker)
    return [
        Blocked(
            cluster=cluster,
            waiting=_session(row),
            blocked_by=tuple(blockers),
            wait_event_type=row["wait_event_type"],
            wait_event=row["wait_event"],
            # now() is the probe's transaction start: a wait that began a moment later is -ε.
            waited_s=None if row["waited_s"] is None else max(0.0, float(row["waited_s"])),
        )
        for row, blockers in waiters.values()
    ]


def roots(blocked: Iterable[Blocked]) -> list[tuple[str, Session]]:
    """(cluster, session) of every blocker that is not waiting itself: where a chain starts.

    pids are only unique within a cluster, so the cluster is part of the key.
    """
    entries = list(blocked)
    waiting = {(b.cluster, b.waiting.pid) for b in entries}
    found: dict[tuple[str, int], Session] = {}
    for entry in entries:
        for blocker in entry.blocked_by:
            key = (entry.cluster, blocker.pid)
            if key not in waiting:
                found.setdefault(key, blocker)
    return [(cluster, session) for (cluster, _), session in found.items()]


def probe_locks(url: str, timeout: int) -> ClusterLocks:
    """Blocked sessions and lock-table pressure of the cluster ``url`` reaches."""
    cluster = conninfo.cluster_key(url)
    result = ClusterLocks(cluster=cluster, url=conninfo.mask(url))
    try:
        conn = admin_connect(url, naming.tool_label("locks"), timeout=timeout)
    except ServerUnreachable as exc:
        result.error = str(exc)
        return result
    try:
        with conn:
            rows = conn.cursor(row_factory=dict_row).execute(BLOCKED_SQL).fetchall()
            held = conn.execute(HELD_SQL).fetchone()
            settings = lock_settings(conn)
    except psycopg.Error as exc:
        # e.g. a role that may connect but not read pg_locks: say so, keep going.
        result.error = first_line(exc)
        return result
    result.reachable = True
    result.blocked = diagnose(cluster, rows)
    result.pressure = LockPressure(
        int(str(held[0])) if held else 0,
        settings.max_locks_per_transaction,
        settings.max_connections,
        settings.max_prepared_transactions,
    )
    return result


def probe_all(urls: Iterable[str], timeout: int) -> list[ClusterLocks]:
    """One probe per distinct cluster among ``urls`` (first URL seen per cluster)."""
    seen: dict[str, str] = {}
    for url in urls:
        seen.setdefault(conninfo.cluster_key(url), url)
    return [probe_locks(url, timeout) for url in seen.values()]
