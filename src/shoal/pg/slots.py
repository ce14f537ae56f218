"""The run's lease and the DDL slots that throttle schema DDL across every run.

Both live on one connection per cluster, to the cluster's control database: the lease
is the connection itself (labelled, so a sweep sees the run as live; it dies with the
process), and a DDL slot is a session advisory lock taken on it. Advisory locks are
per database, so every run must take slots in the same database: ``postgres`` when it
can be reached, else the database in the configured URL.
"""

from __future__ import annotations

import random
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


def slot_count(ddl_slots: int | str, lock_capacity: int) -> int:
    """The configured count, or one derived from the server's lock table."""
    if isinstance(ddl_slots, int):
        return ddl_slots
    return max(1, min(MAX_AUTO_SLOTS, lock_capacity // 2 // LOCKS_PER_DDL))


@dataclass
class Lease:
    """A run's presence in one cluster: held from before the first CREATE to after the last DROP."""

    url: str
    conn: psycopg.Connection[tuple[object, ...]]
    slot_count: int

    @classmethod
    def open(
        cls, url: str, namespace: str, holder: str, ddl_slots: int | str, timeout: int
    ) -> Lease:
        """``ddl_slots``: a count, or ``"auto"`` to derive it from the server's lock table
        (read on this connection when the caller does not know it)."""
        conn = admin_connect(url, naming.lease_label(namespace, holder), timeout=timeout)
        if isinstance(ddl_slots, int):
            return cls(url=url, conn=conn, slot_count=ddl_slots)
        try:
            capacity = lock_settings(conn).capacity
        except BaseException:
            conn.close()
            raise
        return cls(url=url, conn=conn, slot_count=slot_count(ddl_slots, capacity))

    def close(self) -> None:
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
            if not self.conn.closed:
                self.conn.execute("SELECT pg_advisory_unlock(%s, %s)", naming.ddl_slot_lock(held))

    def _try(self, order: list[int]) -> int | None:
        for slot in order:
            row = self.conn.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", naming.ddl_slot_lock(slot)
            ).fetchone()
            if row and row[0]:
                return slot
        return None


def slots_for_capacity(max_locks_per_transaction: int, max_connections: int) -> int:
    """How many schema DDL transactions may run at once without exhausting the lock table."""
    return slot_count("auto", max_locks_per_transaction * max_connections)
