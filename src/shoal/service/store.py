"""Durable job records: one SQLite file in the state directory, and the FIFO line itself.

Only the event loop's thread touches the connection; every write is a short transaction,
so a crash loses at most the output of jobs that were running (they become interrupted).
:class:`JobStore` is also the :class:`~shoal.service.queue.JobQueue` of one host: the
line is the queued rows in ``seq`` order, nothing else.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal.service.models import JobStatus, MetadataValue
from shoal.service.queue import QueueFull

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
_ADDED = {"idem_key": "TEXT", "request_hash": "TEXT", "messages": "TEXT"}
_INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idem_key ON jobs (idem_key) WHERE idem_key IS NOT NULL;
"""

_JSON = ("metadata", "diff", "messages")


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


class JobStore:
    def __init__(self, path: Path) -> None:
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
        values = _to_row(job)
        values.pop("seq")
        names = ", ".join(values)
        marks = ", ".join(f":{n}" for n in values)
        cursor = self._db.execute(f"INSERT INTO jobs ({names}) VALUES ({marks})", values)
        job.seq = int(cursor.lastrowid or 0)
        return job

    def update(self, job_id: str, **changes: Any) -> None:
        if not changes:
            return
        row = _to_row_values(changes)
        assignments = ", ".join(f"{name} = :{name}" for name in row)
        self._db.execute(f"UPDATE jobs SET {assignments} WHERE id = :_id", {**row, "_id": job_id})

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
        """The first job in line, now marked running; None when nobody waits."""
        row = self._db.execute(
            "UPDATE jobs SET status = ?, started_at = ? WHERE seq = "
            "(SELECT seq FROM jobs WHERE status = ? ORDER BY seq LIMIT 1) RETURNING *",
            (JobStatus.running.value, now, JobStatus.queued.value),
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
        finished = [s.value for s in JobStatus if s.finished]
        marks = ", ".join("?" for _ in finished)
        cursor = self._db.execute(
            f"DELETE FROM jobs WHERE status IN ({marks}) AND finished_at < ?",
            (*finished, older_than),
        )
        return cursor.rowcount


def _to_row_values(values: dict[str, Any]) -> dict[str, Any]:
    row = dict(values)
    for name in _JSON:
        if name in row and row[name] is not None:
            row[name] = json.dumps(row[name])
    if isinstance(row.get("status"), JobStatus):
        row["status"] = row["status"].value
    for name in ("save_branch", "output_truncated"):
        if name in row:
            row[name] = int(bool(row[name]))
    return row


def _to_row(job: Job) -> dict[str, Any]:
    return _to_row_values(dict(job.__dict__))


def _from_row(row: sqlite3.Row) -> Job:
    values = dict(row)
    for name in _JSON:
        if values[name] is not None:
            values[name] = json.loads(values[name])
    values["status"] = JobStatus(values["status"])
    values["save_branch"] = bool(values["save_branch"])
    values["output_truncated"] = bool(values["output_truncated"])
    return Job(**values)
