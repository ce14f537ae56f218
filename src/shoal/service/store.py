"""Durable job records and the FIFO line itself: what every job store does, and the
SQLite file in the state directory that holds them on one host.

Only the event loop's thread touches the connection; every write is a short transaction,
so a crash loses at most the output of jobs that were running (they become interrupted).
A store is also the :class:`~shoal.service.queue.JobQueue`: the line is the queued rows
in ``seq`` order, nothing else. :mod:`.pgstore` holds the same records in PostgreSQL for
a fleet of nodes.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from shoal.service.models import JobStatus, MetadataValue
from shoal.service.queue import JobQueue, QueueFull

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    prompt TEXT NOT NULL,
    agent TEXT NOT NULL,
    model TEXT,
    ref TEXT,
    timeout_s REAL NOT NULL,
    metadata TEXT,
    save_branch INTEGER NOT NULL,
    exit_code INTEGER,
    output TEXT NOT NULL DEFAULT '',
    output_truncated INTEGER NOT NULL DEFAULT 0,
    stderr TEXT NOT NULL DEFAULT '',
    error TEXT,
    queued_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    workspace TEXT,
    pid INTEGER,
    pid_started REAL,
    diff TEXT,
    branch TEXT,
    idem_key TEXT,
    request_hash TEXT,
    messages TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq);
"""
# Columns added since the first release: a state directory made by it gains them on open.
_ADDED = {
    "idem_key": "TEXT",
    "request_hash": "TEXT",
    "messages": "TEXT",
    "node": "TEXT",
    "origin": "TEXT",
    "cancel_requested": "INTEGER NOT NULL DEFAULT 0",
    "output_total": "INTEGER NOT NULL DEFAULT 0",
    "claim_seq": "INTEGER",
}
_INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idem_key ON jobs (idem_key) WHERE idem_key IS NOT NULL;
"""

_JSON = ("metadata", "diff", "messages")
FLAGS = ("save_branch", "output_truncated", "cancel_requested")


@dataclass
class Job:
    id: str
    kind: str
    status: JobStatus
    prompt: str
    agent: str
    model: str | None
    ref: str | None
    timeout_s: float
    metadata: dict[str, MetadataValue] | None
    save_branch: bool
    queued_at: float
    seq: int = 0
    exit_code: int | None = None
    output: str = ""
    output_truncated: bool = False
    stderr: str = ""
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    workspace: str | None = None
    pid: int | None = None
    pid_started: float | None = None
    diff: dict[str, Any] | None = field(default=None)
    branch: str | None = None
    # The client's Idempotency-Key (scoped by kind) and a hash of what it asked for.
    idem_key: str | None = None
    request_hash: str | None = None
    messages: list[dict[str, str]] | None = None  # a chat conversation, for agents taking JSON
    node: str | None = None  # the node that runs (or ran) the job
    origin: str | None = None  # the node that admitted it: its callers are connected there
    cancel_requested: bool = False  # asked through any node; the node running it polls
    output_total: int = 0  # characters ever produced, so a follower elsewhere finds the new ones
    claim_seq: int | None = None  # the order jobs left the line in (one order for the fleet)


FINISHED = tuple(s.value for s in JobStatus if s.finished)
LOCAL_NODE = "local"


class JobStore(JobQueue[Job], Protocol):
    """Job records and the line. ``node`` names this process; ``shared``: other nodes use
    the same records (then jobs may run, and be followed or cancelled, on another node)."""

    node: str
    shared: bool

    def close(self) -> None: ...
    def add(self, job: Job) -> Job: ...
    def update(self, job_id: str, **changes: Any) -> None:
        """Change a record; a change of status to a finished one applies only to a job that
        is not finished yet: a finished record is final (a node declared dead cannot
        overwrite the ``interrupted`` the fleet gave its jobs)."""

    def get(self, job_id: str) -> Job | None: ...
    def by_key(self, idem_key: str) -> Job | None: ...
    def list(
        self, status: JobStatus | None = None, *, after_seq: int = 0, limit: int | None = None
    ) -> list[Job]: ...
    def evict(self, older_than: float) -> int: ...


class SqliteStore:
    """The records of one host, in one SQLite file."""

    shared = False

    def __init__(self, path: Path, node: str = LOCAL_NODE) -> None:
        self.node = node
        path.parent.mkdir(parents=True, exist_ok=True)
        # Prompts and outputs are private whatever the umask; SQLite gives its -wal and
        # -shm files the database file's own mode.
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        os.chmod(path, 0o600)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        # WAL keeps readers from blocking the writer; NORMAL is durable across a process
        # crash (the case we recover from), only a power loss can drop the last commit.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        present = {row["name"] for row in self._db.execute("PRAGMA table_info(jobs)")}
        for name, kind in _ADDED.items():
            if name not in present:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")
        self._db.executescript(_INDEXES)

    def close(self) -> None:
        self._db.close()

    def add(self, job: Job) -> Job:
        values = job_values(job)
        values.pop("seq")
        names = ", ".join(values)
        marks = ", ".join(f":{n}" for n in values)
        cursor = self._db.execute(f"INSERT INTO jobs ({names}) VALUES ({marks})", values)
        job.seq = int(cursor.lastrowid or 0)
        return job

    def update(self, job_id: str, **changes: Any) -> None:
        if not changes:
            return
        row = row_values(changes)
        assignments = ", ".join(f"{name} = :{name}" for name in row)
        final = ""
        if isinstance(changes.get("status"), JobStatus) and changes["status"].finished:
            final = " AND status IN ('queued', 'running')"
        self._db.execute(
            f"UPDATE jobs SET {assignments} WHERE id = :_id{final}", {**row, "_id": job_id}
        )

    # -- the line (JobQueue) ------------------------------------------------------------------

    def enqueue(self, job: Job, *, max_depth: int) -> int:
        """Add ``job`` at the end of the line; its position. QueueFull at ``max_depth``."""
        # IMMEDIATE takes the write lock first, so the count and the insert are one step.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            (depth,) = self._db.execute(
                "SELECT count(*) FROM jobs WHERE status IN (?, ?)",
                (JobStatus.queued.value, JobStatus.running.value),
            ).fetchone()
            if depth >= max_depth:
                raise QueueFull(f"{depth} jobs are running or waiting (max_queue_depth)")
            self.add(job)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return self.position(job.id) or 0

    def claim(self, now: float) -> Job | None:
        """The first job in line, now marked running; None when nobody waits.

        Never started before it was queued: a claim asked for at ``now`` can take a job
        queued a moment later (as :mod:`shoal.service.pgstore` does too).
        """
        row = self._db.execute(
            "UPDATE jobs SET status = ?, started_at = max(?, queued_at), node = ?, "
            "claim_seq = seq WHERE seq = "
            "(SELECT seq FROM jobs WHERE status = ? ORDER BY seq LIMIT 1) RETURNING *",
            (JobStatus.running.value, now, self.node, JobStatus.queued.value),
        ).fetchone()
        return None if row is None else _from_row(row)

    def position(self, job_id: str) -> int | None:
        """1 = next to start; None when the job is not waiting."""
        (ahead,) = self._db.execute(
            "SELECT count(*) FROM jobs WHERE status = ?1 AND seq <= "
            "(SELECT seq FROM jobs WHERE id = ?2 AND status = ?1)",
            (JobStatus.queued.value, job_id),
        ).fetchone()
        return int(ahead) or None

    def withdraw(self, job_id: str, now: float) -> bool:
        """Take a waiting job out of line (it becomes cancelled); False when it was not waiting."""
        cursor = self._db.execute(
            "UPDATE jobs SET status = ?, finished_at = ? WHERE id = ? AND status = ?",
            (JobStatus.cancelled.value, now, job_id, JobStatus.queued.value),
        )
        return cursor.rowcount == 1

    def request_cancel(self, job_id: str) -> None:
        self.update(job_id, cancel_requested=True)

    def queued(self) -> int:
        (count,) = self._db.execute(
            "SELECT count(*) FROM jobs WHERE status = ?", (JobStatus.queued.value,)
        ).fetchone()
        return int(count)

    # -- records ---------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _from_row(row)

    def by_key(self, idem_key: str) -> Job | None:
        row = self._db.execute("SELECT * FROM jobs WHERE idem_key = ?", (idem_key,)).fetchone()
        return None if row is None else _from_row(row)

    def list(
        self, status: JobStatus | None = None, *, after_seq: int = 0, limit: int | None = None
    ) -> list[Job]:
        """Jobs in the order they were submitted, from just after ``after_seq`` on; all of
        them unless ``limit`` (restart recovery must see every running and queued job)."""
        bound = -1 if limit is None else limit  # SQLite: a negative LIMIT means none
        if status is None:
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, bound)
            )
        else:
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE status = ? AND seq > ? ORDER BY seq LIMIT ?",
                (status.value, after_seq, bound),
            )
        return [_from_row(row) for row in rows]

    def evict(self, older_than: float) -> int:
        """Forget finished jobs that finished before ``older_than`` (epoch seconds)."""
        marks = ", ".join("?" for _ in FINISHED)
        cursor = self._db.execute(
            f"DELETE FROM jobs WHERE status IN ({marks}) AND finished_at < ?",
            (*FINISHED, older_than),
        )
        return cursor.rowcount


def row_values(values: dict[str, Any]) -> dict[str, Any]:
    """Values of a record as its row holds them (JSON columns as text, flags as 0/1)."""
    row = dict(values)
    for name in _JSON:
        if name in row and row[name] is not None:
            row[name] = json.dumps(row[name])
    if isinstance(row.get("status"), JobStatus):
        row["status"] = row["status"].value
    for name in FLAGS:
        if name in row:
            row[name] = int(bool(row[name]))
    return row


def job_values(job: Job) -> dict[str, Any]:
    return row_values(dict(job.__dict__))


def _from_row(row: sqlite3.Row) -> Job:
    return from_values(dict(row))


def from_values(values: dict[str, Any]) -> Job:
    """A record from a row's values, whichever store it comes from."""
    for name in _JSON:
        if values[name] is not None:
            values[name] = json.loads(values[name])
    values["status"] = JobStatus(values["status"])
    for name in FLAGS:
        values[name] = bool(values[name])
    return Job(**values)
