"""The run's lease and the DDL slots that throttle schema DDL across every run.

Both live on one connection per cluster, to the cluster's control database: the lease
is the connection itself (labelled, so a sweep sees the run as live; it dies with the
process), and a DDL slot is a session advisory lock taken on it. Advisory locks are
per database, so every run must take slots in the same database: ``postgres`` when it
can be reached, else the database in the configured URL.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

from shoal import conninfo, naming
from shoal.errors import ServerUnreachable
from shoal.pg.connect import admin_connect

# Measured: create_all of a 220-table schema holds ~4,000 locks at commit, and a drop
# of the same takes more at once. Budget half the lock table for concurrent DDL.
LOCKS_PER_DDL = 4000
MAX_AUTO_SLOTS = 8
# No DDL counts as taking fewer locks than this: catalog rows, the schema itself.
MIN_FOOTPRINT = 64
# How often a held lease is checked (and re-opened after a server restart).
KEEP_ALIVE_S = 2.0
_FIRST_PAUSE_S = 0.01
_MAX_PAUSE_S = 0.2


def control_url(url: str, timeout: int) -> str:
    """The URL of the cluster's control database (``postgres``, or ``url``'s own).

    Advisory locks are per database, so every run takes its DDL slots in the same one.
    """
    candidate = conninfo.with_params(url, dbname="postgres")
    if candidate == url:
        return url
    try:
        admin_connect(candidate, naming.tool_label("probe"), timeout=timeout).close()
    except ServerUnreachable:
        return url
    return candidate


# Session advisory locks: DDL slots, a refill's hold on its pool, a forced namespace.
TRY_LOCK = "SELECT pg_try_advisory_lock(%s, %s)"
UNLOCK = "SELECT pg_advisory_unlock(%s, %s)"
ALIVE = "SELECT 1"

LOCK_SETTINGS_SQL = """
SELECT current_setting('max_locks_per_transaction')::int,
       current_setting('max_connections')::int,
       current_setting('max_prepared_transactions')::int
"""


@dataclass(frozen=True)
class LockSettings:
    max_locks_per_transaction: int
    max_connections: int
    max_prepared_transactions: int

    @property
    def capacity(self) -> int:
        """The shared lock table's nominal size (PostgreSQL sizes it per connection slot)."""
        slots = self.max_connections + self.max_prepared_transactions
        return self.max_locks_per_transaction * slots


def lock_settings(conn: psycopg.Connection[tuple[object, ...]]) -> LockSettings:
    row = conn.execute(LOCK_SETTINGS_SQL).fetchone()
    assert row is not None
    return LockSettings(*(int(str(value)) for value in row))


def slot_count(ddl_slots: int | str, lock_capacity: int, footprint: int | None = None) -> int:
    """The configured count, or as many as half the server's lock table holds DDL of
    this setup's lock ``footprint`` (measured when it was last built; unknown: the
    4,000 locks of a 220-table schema). A 3-table schema does not queue behind the
    slot count a 220-table one needs."""
    if isinstance(ddl_slots, int):
        return ddl_slots
    per_ddl = max(footprint or LOCKS_PER_DDL, MIN_FOOTPRINT)
    return max(1, min(MAX_AUTO_SLOTS, lock_capacity // 2 // per_ddl))


class Lease:
    """A run's presence in one cluster: held from before the first CREATE to after the last
    DROP (DESIGN invariant 4).

    A server restart closes every lease at once while the runs go on. So a lease is
    re-opened before the run touches the server again (:meth:`ensure`), and
    :meth:`keep_alive` checks it in the background, so a run whose tests are slow and
    quiet is seen live again within seconds of the server coming back.
    """

    def __init__(
        self,
        url: str,
        conn: psycopg.Connection[tuple[object, ...]],
        slot_count: int,
        *,
        label: str = "",
        timeout: int = 5,
    ) -> None:
        self.url = url
        self.conn = conn
        self.slot_count = slot_count
        self._label = label
        self._timeout = timeout
        self._lock = threading.Lock()  # one user of the connection at a time
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    @classmethod
    def open(
        cls, url: str, namespace: str, holder: str, ddl_slots: int | str, timeout: int
    ) -> Lease:
        """``ddl_slots``: a count, or ``"auto"`` to derive it from the server's lock table
        (read on this connection when the caller does not know it)."""
        label = naming.lease_label(namespace, holder)
        conn = admin_connect(url, label, timeout=timeout)
        count = ddl_slots if isinstance(ddl_slots, int) else 0
        if not count:
            try:
                count = slot_count(ddl_slots, lock_settings(conn).capacity)
            except BaseException:
                conn.close()
                raise
        return cls(url, conn, count, label=label, timeout=timeout)

    def ensure(self) -> None:
        """Re-open the lease if the server dropped it (a restart); raises when it cannot."""
        with self._lock:
            self._ensure()

    def _ensure(self) -> None:
        if not self.conn.closed and not self.conn.broken:
            try:
                self.conn.execute(ALIVE)
                return
            except psycopg.OperationalError:
                pass  # the server went away under us: open a new one below
        self.conn.close()
        self.conn = admin_connect(self.url, self._label, timeout=self._timeout)

    def keep_alive(self, interval_s: float = KEEP_ALIVE_S) -> None:
        """Check the lease every ``interval_s`` in a daemon thread, re-opening it if lost."""
        if self._watcher is not None or not self._label:
            return

        def watch() -> None:
            while not self._stop.wait(interval_s):
                # Best effort: a server that is still down is tried again next time, and
                # the run's next DDL re-opens the lease itself (or fails, saying why).
                with contextlib.suppress(Exception), self._lock:
                    if not self._stop.is_set():
                        self._ensure()

        self._watcher = threading.Thread(target=watch, name="shoal-lease", daemon=True)
        self._watcher.start()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self.conn.close()

    @contextmanager
    def ddl_slot(self, worker: str) -> Iterator[float]:
        """Hold a DDL slot; yields the seconds spent waiting for it.

        The preferred slot comes from the worker number; when it is taken, any free slot
        will do. When all are taken the worker polls every slot with a growing,
        jittered pause rather than blocking on its preferred one: every run has the
        same worker names, so blocking would queue everyone on the first few slots
        while the others sat idle.
        """
        preferred = naming.preferred_ddl_slot(worker, self.slot_count)
        order = [preferred] + [s for s in range(self.slot_count) if s != preferred]
        self.ensure()  # lease before DDL, also after a server restart
        started = time.perf_counter()
        pause = _FIRST_PAUSE_S
        held = self._try(order)
        while held is None:
            time.sleep(pause * random.uniform(0.5, 1.5))
            pause = min(pause * 2, _MAX_PAUSE_S)
            held = self._try(order)
        try:
            yield time.perf_counter() - started
        finally:
            with self._lock, contextlib.suppress(psycopg.OperationalError):
                # A lease lost meanwhile lost its locks with it.
                if not self.conn.closed:
                    self.conn.execute(UNLOCK, naming.ddl_slot_lock(held))

    def _try(self, order: list[int]) -> int | None:
        with self._lock:
            for slot in order:
                row = self.conn.execute(TRY_LOCK, naming.ddl_slot_lock(slot)).fetchone()
                if row and row[0]:
                    return slot
        return None


def slots_for_capacity(max_locks_per_transaction: int, max_connections: int) -> int:
    """How many schema DDL transactions may run at once without exhausting the lock table."""
    return slot_count("auto", max_locks_per_transaction * max_connections)


_HOLDER_SQL = """
SELECT a.application_name, a.client_addr::text, a.backend_start
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


def hold_namespace(
    control_url: str, namespace: str, timeout: int
) -> psycopg.Connection[tuple[object, ...]]:
    """Hold ``namespace`` on one cluster for the life of the returned connection.

    Raises NamespaceTaken, describing the run that holds it, when another one does.
    """
    from shoal.errors import NamespaceTaken

    conn = admin_connect(control_url, naming.lease_label(namespace, "forced"), timeout=timeout)
    key = naming.namespace_lock(namespace)
    row = conn.execute(TRY_LOCK, key).fetchone()
    if row and row[0]:
        return conn
    holder = conn.execute(_HOLDER_SQL, key).fetchone()
    conn.close()
    who = "another run"
    if holder is not None:
        label, client, started = holder
        where = f" from {client}" if client else " on this host's socket"
        who = f"the run whose connection {label}{where} started {started:%Y-%m-%d %H:%M:%S %Z}"
    raise NamespaceTaken(f"namespace {namespace!r} is in use by {who}")
