"""Job records and the FIFO line in PostgreSQL: every node pointing at one database is one
service (``shoal serve --queue postgresql://…``).

Built on PostgreSQL's own primitives rather than a job-queue library. A library such as
procrastinate claims "the first job nobody has locked" (``FOR UPDATE SKIP LOCKED``), so a
later job can start while an earlier one's claim is still in flight on another node, and it
has no notion of a depth limit over queued + running jobs; both are the service's contract.
Here one transaction-scoped advisory lock orders the line: joining it (count, insert) and
leaving it from the head (the lowest ``seq`` still queued) each happen under that lock, so
the order jobs are numbered, committed and started in is one order for the whole fleet,
and the depth check and the insert are one step. Holding it costs one short statement.

Liveness: each node writes a heartbeat (server clock, so hosts' clocks do not matter);
any node marks the running jobs of a node whose heartbeat is older than
``node_timeout_s`` interrupted. Updates that finish a job apply only to an unfinished
record, so a node declared dead that comes back cannot overwrite that, and it stops the
jobs the fleet no longer counts as its own (:meth:`PgStore.to_stop`). NOTIFY wakes idle
nodes when a job joins the line and the running node when a cancel is asked; polling
every heartbeat covers a lost notification.

Every connection is labelled with the node (``application_name``) and bound to the
queue's own schema only, so nothing is ever created in ``public``.

The store stays synchronous and is called from worker threads, each with a connection of
its own (:mod:`.asyncstore` says why). A connection the server dropped (a restart, a
terminated backend, a network cut) is replaced, and the call that found it dropped runs
once more on the new one when that cannot do twice what was done once
(:func:`_once_more_if_dropped`): reads; writes that set absolute values (``update``,
``beat``, ``leave``, ``evict``, ``request_cancel``); and transactions that failed before
their COMMIT was sent (``enqueue``, ``claim``, ``reap``). Not ``add`` and ``withdraw``: one
autocommit statement each, which may have been applied when the reply was lost, and
whose answer (a new row; whether the job was still waiting) would be wrong the second
time; nor a transaction lost during its COMMIT, whose outcome is unknown. A statement
error (a lock or statement timeout) is never retried: the connection is fine.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from shoal import conninfo, naming
from shoal.errors import ShoalError, first_line
from shoal.service.models import JobStatus
from shoal.service.queue import QueueFull
from shoal.service.store import FINISHED, FLAGS, Job, from_values, job_values, row_values

log = logging.getLogger("shoal.serve")
P = ParamSpec("P")
T = TypeVar("T")
Connection = psycopg.Connection[dict[str, Any]]
CONNECT_TIMEOUT_S = 5
# Calls run in worker threads, off the event loop, but a thread waiting is one fewer for
# the node's other calls: no statement may wait for long, a lock wait (the line's advisory
# lock included) least of all.
STATEMENT_TIMEOUT = "10s"
LOCK_TIMEOUT = "5s"
DEAD_NODE_ERROR = "the node running the job stopped (no heartbeat for {timeout:g} s)"
DEAD_ORIGIN_ERROR = "the node the request came through stopped before it ran"
# Nodes that stopped stay listed (as not alive) this long after their last heartbeat.
KEEP_DEAD_NODES_S = 300.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text UNIQUE NOT NULL,
    kind text NOT NULL,
    status text NOT NULL,
    prompt text NOT NULL,
    agent text NOT NULL,
    model text,
    ref text,
    timeout_s double precision NOT NULL,
    metadata text,
    save_branch boolean NOT NULL,
    exit_code integer,
    output text NOT NULL DEFAULT '',
    output_truncated boolean NOT NULL DEFAULT false,
    stderr text NOT NULL DEFAULT '',
    error text,
    queued_at double precision NOT NULL,
    started_at double precision,
    finished_at double precision,
    workspace text,
    pid integer,
    pid_started double precision,
    diff text,
    branch text,
    idem_key text,
    request_hash text,
    messages text,
    node text,
    origin text,
    cancel_requested boolean NOT NULL DEFAULT false,
    output_total bigint NOT NULL DEFAULT 0,
    claim_seq bigint
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idem_key ON jobs (idem_key) WHERE idem_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_running_node ON jobs (node) WHERE status = 'running';
CREATE SEQUENCE IF NOT EXISTS claims;
CREATE TABLE IF NOT EXISTS nodes (
    node text PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    capacity integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    heartbeat_at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

_LOCK = "SELECT pg_advisory_xact_lock(%s, %s)"
_DEPTH = "SELECT count(*) AS n FROM jobs WHERE status IN ('queued', 'running')"
_QUEUED = "SELECT count(*) AS n FROM jobs WHERE status = 'queued'"
_HEAD = "SELECT seq FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1"
# A claim is asked for at ``now`` and may wait for the line's lock meanwhile, so the job it
# takes can have been queued after ``now``: it starts when it was queued, then, not before.
_CLAIM = (
    "UPDATE jobs SET status = 'running', started_at = GREATEST(%(now)s, queued_at), "
    "node = %(node)s, "
    "claim_seq = nextval('claims') WHERE seq = %(seq)s AND status = 'queued' RETURNING *"
)
_POSITION = (
    "SELECT count(*) AS n FROM jobs WHERE status = 'queued' AND seq <= "
    "(SELECT seq FROM jobs WHERE id = %s AND status = 'queued')"
)
_WITHDRAW = (
    "UPDATE jobs SET status = 'cancelled', finished_at = %s WHERE id = %s AND status = 'queued'"
)
_ASK_CANCEL = (
    "UPDATE jobs SET cancel_requested = true WHERE id = %s AND status = 'running' RETURNING node"
)
_NOTIFY = "SELECT pg_notify(%s, %s)"
_TO_STOP = (
    "SELECT id FROM jobs WHERE id = ANY(%(ids)s) "
    "AND (cancel_requested OR status <> 'running' OR node IS DISTINCT FROM %(node)s)"
)
_BEAT = (
    "INSERT INTO nodes (node, host, pid, capacity) VALUES (%(node)s, %(host)s, %(pid)s, "
    "%(capacity)s) ON CONFLICT (node) DO UPDATE SET heartbeat_at = clock_timestamp(), "
    "capacity = EXCLUDED.capacity"
)
_LEAVE = "DELETE FROM nodes WHERE node = %s"
_ALIVE = (
    "SELECT 1 FROM nodes n WHERE n.node = {column} "
    "AND n.heartbeat_at > clock_timestamp() - make_interval(secs => %(timeout)s)"
)
_REAP_RUNNING = (
    "UPDATE jobs SET status = 'interrupted', finished_at = %(now)s, error = %(error)s "
    f"WHERE status = 'running' AND NOT EXISTS ({_ALIVE.format(column='jobs.node')}) "
    "RETURNING id, node"
)
_REAP_CHATS = (
    "UPDATE jobs SET status = 'interrupted', finished_at = %(now)s, error = %(error)s "
    f"WHERE status = 'queued' AND kind = 'chat' AND NOT EXISTS "
    f"({_ALIVE.format(column='jobs.origin')}) RETURNING id"
)
_HOSTS = "SELECT node, host FROM nodes WHERE node = ANY(%s)"
_FORGET_NODES = (
    "DELETE FROM nodes WHERE heartbeat_at < clock_timestamp() - make_interval(secs => %s)"
)
_FLEET = (
    "SELECT n.node, n.host, n.capacity, "
    "extract(epoch FROM clock_timestamp() - n.heartbeat_at)::float8 AS age, "
    "(SELECT count(*) FROM jobs j WHERE j.status = 'running' AND j.node = n.node) AS running "
    "FROM nodes n ORDER BY n.started_at, n.node"
)
_EVICT = "DELETE FROM jobs WHERE status = ANY(%s) AND finished_at < %s"
_GET = "SELECT * FROM jobs WHERE id = %s"
_BY_KEY = "SELECT * FROM jobs WHERE idem_key = %s"
_LIST = "SELECT * FROM jobs WHERE seq > %s ORDER BY seq LIMIT %s"
_LIST_STATUS = "SELECT * FROM jobs WHERE status = %s AND seq > %s ORDER BY seq LIMIT %s"


class QueueUnreachable(ShoalError):
    """The queue's PostgreSQL server could not be reached or used."""


@dataclass(frozen=True)
class NodeState:
    node: str
    host: str
    capacity: int
    running: int
    heartbeat_age_s: float
    alive: bool


@dataclass(frozen=True)
class Reaped:
    """Jobs the fleet took from dead nodes: interrupted, with the host each ran on."""

    running: dict[str, str]  # job id -> host of the node that ran it
    chats: list[str]


def connect(url: str, node: str, schema: str) -> Connection:
    """A connection of this node's queue: labelled, bound to the queue's schema only."""
    # libpq reads PGOPTIONS only when no options are given: give them, keeping the URL's.
    given = conninfo.params(url).get("options", "")
    bound = conninfo.search_path_option((schema,))
    options = " ".join(
        part
        for part in (
            given,
            bound,
            f"-c statement_timeout={STATEMENT_TIMEOUT}",
            f"-c lock_timeout={LOCK_TIMEOUT}",
        )
        if part
    )
    try:
        return psycopg.connect(
            url,
            autocommit=True,
            row_factory=dict_row,
            application_name=naming.serve_label(node),
            options=options,
            connect_timeout=CONNECT_TIMEOUT_S,
        )
    except psycopg.Error as exc:
        raise QueueUnreachable(
            f"cannot connect to {conninfo.mask(url)} within {CONNECT_TIMEOUT_S}s: {first_line(exc)}"
        ) from None


def ensure_schema(db: psycopg.Connection[Any], schema: str) -> None:
    """Create the queue's schema and tables if missing: race-free when nodes start at once
    (``IF NOT EXISTS`` alone is not: two sessions can both find a table missing)."""
    with db.transaction():
        db.execute(_LOCK, naming.serve_schema_lock())
        db.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)


def _once_more_if_dropped(
    call: Callable[Concatenate[PgStore, P], T],
) -> Callable[Concatenate[PgStore, P], T]:
    """``call`` again, on a new connection, when the server dropped the one it ran on and
    nothing was committed that a second run would repeat (see the module's docstring)."""

    def retrying(store: PgStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        store._local.committing = False
        try:
            return call(store, *args, **kwargs)
        except psycopg.OperationalError as exc:
            if not store._dropped() or store._local.committing:
                raise
            log.info(
                "the queue's connection was lost (%s): %s again", first_line(exc), call.__name__
            )
        store._local.committing = False
        return call(store, *args, **kwargs)

    functools.update_wrapper(retrying, call)
    return retrying


class PgStore:
    """The records of the fleet, seen from one node. Safe to call from many threads at
    once: each thread has a connection of its own."""

    shared = True

    def __init__(
        self,
        url: str,
        node: str,
        *,
        capacity: int,
        node_timeout_s: float,
        schema: str = naming.SERVE_SCHEMA,
        host: str | None = None,
    ) -> None:
        self.url = url
        self.node = node
        self.schema = schema
        self.host = host or socket.gethostname()
        self.capacity = capacity
        self.node_timeout_s = node_timeout_s
        self._local = threading.local()  # .db: the thread's connection; .committing
        self._opened: list[Connection] = []
        self._opening = threading.Lock()
        try:
            ensure_schema(self.db, schema)
        except psycopg.Error as exc:
            self.close()
            raise QueueUnreachable(f"cannot set up the queue: {first_line(exc)}") from None

    @property
    def db(self) -> Connection:
        """This thread's connection; a new one when the server dropped the last."""
        db: Connection | None = getattr(self._local, "db", None)
        if db is None or db.closed or db.broken:
            db = self._local.db = connect(self.url, self.node, self.schema)
            with self._opening:
                self._opened = [c for c in self._opened if not c.closed] + [db]
        return db

    def _dropped(self) -> bool:
        db: Connection | None = getattr(self._local, "db", None)
        return db is None or db.closed or db.broken

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        db = self.db
        with db.transaction():
            yield db
            # COMMIT comes next: lost from here on, the outcome is unknown.
            self._local.committing = True

    def close(self) -> None:
        with self._opening:
            opened, self._opened = self._opened, []
        for db in opened:
            db.close()

    def add(self, job: Job) -> Job:
        values = _pg(job_values(job))
        values.pop("seq")
        query = sql.SQL("INSERT INTO jobs ({}) VALUES ({}) RETURNING seq").format(
            sql.SQL(", ").join(map(sql.Identifier, values)),
            sql.SQL(", ").join(map(sql.Placeholder, values)),
        )
        row = self.db.execute(query, values).fetchone()
        assert row is not None
        job.seq = int(row["seq"])
        return job

    def update(self, job_id: str, **changes: Any) -> None:
        if changes:
            self._update(job_id, changes)

    @_once_more_if_dropped
    def _update(self, job_id: str, changes: dict[str, Any]) -> None:
        values = _pg(row_values(changes))
        query = sql.SQL("UPDATE jobs SET {} WHERE id = %(_id)s").format(
            sql.SQL(", ").join(
                sql.SQL("{} = {}").format(sql.Identifier(n), sql.Placeholder(n)) for n in values
            )
        )
        status = changes.get("status")
        if isinstance(status, JobStatus) and status.finished:
            query += sql.SQL(" AND status IN ('queued', 'running')")
        self.db.execute(query, {**values, "_id": job_id})

    # -- the line (JobQueue) ------------------------------------------------------------------

    def enqueue(self, job: Job, *, max_depth: int) -> int:
        """Add ``job`` at the end of the fleet's line; QueueFull at ``max_depth`` in all."""
        self._join(job, max_depth)
        return self.position(job.id) or 0

    @_once_more_if_dropped
    def _join(self, job: Job, max_depth: int) -> None:
        job.origin = self.node
        with self._transaction() as db:
            db.execute(_LOCK, naming.serve_line_lock(self.schema))
            depth = self._count(_DEPTH)
            if depth >= max_depth:
                raise QueueFull(f"{depth} jobs are running or waiting (max_queue_depth)")
            self.add(job)
            db.execute(_NOTIFY, (naming.SERVE_LINE_CHANNEL, job.id))

    @_once_more_if_dropped
    def claim(self, now: float) -> Job | None:
        """The first job in the fleet's line, now running on this node; None when none waits."""
        with self._transaction() as db:
            db.execute(_LOCK, naming.serve_line_lock(self.schema))
            # Under the lock nobody else claims; a cancel can still take the head out of line
            # between the two statements, so look again then.
            for _ in range(100):
                head = db.execute(_HEAD).fetchone()
                if head is None:
                    return None
                row = db.execute(
                    _CLAIM, {"now": now, "node": self.node, "seq": head["seq"]}
                ).fetchone()
                if row is not None:
                    return from_values(row)
        return None

    @_once_more_if_dropped
    def position(self, job_id: str) -> int | None:
        row = self.db.execute(_POSITION, (job_id,)).fetchone()
        return (int(row["n"]) or None) if row else None

    def withdraw(self, job_id: str, now: float) -> bool:
        return self.db.execute(_WITHDRAW, (now, job_id)).rowcount == 1

    @_once_more_if_dropped
    def queued(self) -> int:
        return self._count(_QUEUED)

    @_once_more_if_dropped
    def request_cancel(self, job_id: str) -> None:
        with self._transaction() as db:
            if db.execute(_ASK_CANCEL, (job_id,)).fetchone() is not None:
                db.execute(_NOTIFY, (naming.SERVE_CANCEL_CHANNEL, job_id))

    # -- the fleet -------------------------------------------------------------------------------

    @_once_more_if_dropped
    def beat(self) -> None:
        """This node is alive (its heartbeat, on the server's clock)."""
        self.db.execute(
            _BEAT,
            {"node": self.node, "host": self.host, "pid": os.getpid(), "capacity": self.capacity},
        )

    @_once_more_if_dropped
    def leave(self) -> None:
        """This node stops: the fleet need not wait for its heartbeat to expire."""
        self.db.execute(_LEAVE, (self.node,))

    @_once_more_if_dropped
    def to_stop(self, job_ids: list[str]) -> list[str]:
        """Of the jobs running here, those to stop: a cancel was asked, or the fleet no
        longer counts them as running here (this node was declared dead meanwhile)."""
        if not job_ids:
            return []
        rows = self.db.execute(_TO_STOP, {"ids": job_ids, "node": self.node}).fetchall()
        return [row["id"] for row in rows]

    @_once_more_if_dropped
    def reap(self, now: float) -> Reaped:
        """Interrupt the running jobs of dead nodes and the waiting chat requests whose
        callers were connected to one; forget nodes dead for long."""
        timeout = self.node_timeout_s
        with self._transaction() as db:
            running = db.execute(
                _REAP_RUNNING,
                {"now": now, "timeout": timeout, "error": DEAD_NODE_ERROR.format(timeout=timeout)},
            ).fetchall()
            chats = db.execute(
                _REAP_CHATS, {"now": now, "timeout": timeout, "error": DEAD_ORIGIN_ERROR}
            ).fetchall()
            nodes = sorted({row["node"] for row in running if row["node"]})
            hosts = {r["node"]: r["host"] for r in db.execute(_HOSTS, (nodes,)).fetchall()}
            db.execute(_FORGET_NODES, (max(KEEP_DEAD_NODES_S, 10 * timeout),))
        return Reaped(
            running={row["id"]: hosts.get(row["node"], "") for row in running},
            chats=[row["id"] for row in chats],
        )

    @_once_more_if_dropped
    def fleet(self) -> list[NodeState]:
        return [
            NodeState(
                node=row["node"],
                host=row["host"],
                capacity=int(row["capacity"]),
                running=int(row["running"]),
                heartbeat_age_s=round(float(row["age"]), 3),
                alive=float(row["age"]) < self.node_timeout_s,
            )
            for row in self.db.execute(_FLEET).fetchall()
        ]

    # -- records ---------------------------------------------------------------------------

    @_once_more_if_dropped
    def get(self, job_id: str) -> Job | None:
        row = self.db.execute(_GET, (job_id,)).fetchone()
        return None if row is None else from_values(row)

    @_once_more_if_dropped
    def by_key(self, idem_key: str) -> Job | None:
        row = self.db.execute(_BY_KEY, (idem_key,)).fetchone()
        return None if row is None else from_values(row)

    @_once_more_if_dropped
    def list(
        self, status: JobStatus | None = None, *, after_seq: int = 0, limit: int | None = None
    ) -> list[Job]:
        # LIMIT NULL is no limit.
        if status is None:
            rows = self.db.execute(_LIST, (after_seq, limit)).fetchall()
        else:
            rows = self.db.execute(_LIST_STATUS, (status.value, after_seq, limit)).fetchall()
        return [from_values(row) for row in rows]

    @_once_more_if_dropped
    def evict(self, older_than: float) -> int:
        return self.db.execute(_EVICT, (list(FINISHED), older_than)).rowcount

    def _count(self, query: str) -> int:
        row = self.db.execute(query).fetchone()
        return int(row["n"]) if row else 0


def _pg(values: dict[str, Any]) -> dict[str, Any]:
    # PostgreSQL has booleans: the flags go as such, not as SQLite's 0/1.
    return {k: bool(v) if k in FLAGS else v for k, v in values.items()}


class Listener:
    """NOTIFY of the line and of cancels, handed to ``on_notify(channel, payload)`` from a
    thread of its own (a blocking psycopg connection), until :meth:`stop`."""

    def __init__(
        self, url: str, node: str, schema: str, on_notify: Callable[[str, str], None]
    ) -> None:
        self._url = url
        self._node = node
        self._schema = schema
        self._on_notify = on_notify
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="shoal-queue-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

    def _listen(self) -> None:
        while not self._stopped.is_set():
            try:
                with connect(self._url, self._node, self._schema) as db:
                    for channel in (naming.SERVE_LINE_CHANNEL, naming.SERVE_CANCEL_CHANNEL):
                        db.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    while not self._stopped.is_set():
                        for note in db.notifies(timeout=0.5):
                            self._on_notify(note.channel, note.payload)
            except (psycopg.Error, QueueUnreachable) as exc:
                # Polling every heartbeat still finds what a lost notification said.
                log.warning("queue notifications paused: %s", first_line(exc))
                self._stopped.wait(1.0)
