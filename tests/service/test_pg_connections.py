"""A node of a PostgreSQL queue and its connections: a held line lock stalls no request,
and a connection the server dropped is replaced without failing the call that found it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

from shoal import naming
from shoal.service.models import JobStatus
from shoal.service.pgstore import PgStore
from shoal.service.store import Job
from tests.service.conftest import Queue, ServeFactory

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("queue_kind", ["embedded", "external"], indirect=True),
]
HOLD_S = 5.0
PROMPT_S = 1.0  # what "promptly" means while the lock is held


@contextmanager
def admin(queue: Queue) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(queue.url, autocommit=True, application_name="shoal_tests") as db:
        yield db


def node_backends(db: psycopg.Connection[tuple[object, ...]], node: str) -> list[int]:
    rows = db.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
        (naming.serve_label(node),),
    ).fetchall()
    return [int(str(row[0])) for row in rows]


def waiting_on_a_lock(db: psycopg.Connection[tuple[object, ...]], node: str) -> bool:
    row = db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
        "AND wait_event_type = 'Lock'",
        (naming.serve_label(node),),
    ).fetchone()
    return row is not None and int(str(row[0])) > 0


async def test_a_held_line_lock_stalls_no_request(serve: ServeFactory, queue: Queue) -> None:
    async with serve(max_concurrency=1) as s:
        done = await s.wait(await s.submit("print before"))
        node = s.service.store.node
        with admin(queue) as holder, admin(queue) as watcher:
            # Another node's claim, stuck while holding the line: this node's claims wait.
            holder.execute("BEGIN")
            holder.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)", naming.serve_line_lock(queue.schema)
            )
            held = time.monotonic()
            while not waiting_on_a_lock(watcher, node):
                assert time.monotonic() - held < 2, "the node never waited on the line's lock"
                await asyncio.sleep(0.02)
            slowest = 0.0
            answered = 0
            while time.monotonic() - held < HOLD_S - PROMPT_S:
                for path in ("/health", f"/jobs/{done['job_id']}"):
                    asked = time.monotonic()
                    response = await s.client.get(path, timeout=PROMPT_S)
                    slowest = max(slowest, time.monotonic() - asked)
                    assert response.status_code == 200, response.text
                    answered += 1
                await asyncio.sleep(0.1)
            assert waiting_on_a_lock(watcher, node)
            holder.execute("COMMIT")
        assert slowest < PROMPT_S
        assert answered >= 10
        # The line moves again once the lock is free.
        after = await s.wait(await s.submit("print after"))
        assert (done["status"], after["status"]) == ("completed", "completed")


async def test_a_terminated_connection_is_replaced_and_the_request_succeeds(
    serve: ServeFactory, queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="shoal.serve")
    async with serve() as s:
        job_id = await s.submit("print kept")
        await s.wait(job_id)
        node = s.service.store.node
        with admin(queue) as db:
            before = node_backends(db, node)
            assert before
            for pid in before:
                db.execute("SELECT pg_terminate_backend(%s)", (pid,))
            health = await s.client.get("/health")
            assert health.status_code == 200, health.text
            assert (await s.job(job_id))["output"] == "kept\n"
            assert set(node_backends(db, node)).isdisjoint(before)
        assert "the queue's connection was lost" in caplog.text
        assert (await s.wait(await s.submit("print again")))["status"] == "completed"


def record(job_id: str) -> Job:
    return Job(
        id=job_id,
        kind="execute",
        status=JobStatus.queued,
        prompt="x",
        agent="a",
        model=None,
        ref=None,
        timeout_s=60,
        metadata=None,
        save_branch=False,
        queued_at=time.time(),
    )


def test_reads_and_idempotent_writes_are_retried_once_on_a_new_connection(queue: Queue) -> None:
    store = PgStore(
        queue.url,
        naming.serve_node_id("retry", 1, "0000000a"),
        capacity=1,
        node_timeout_s=5,
        schema=queue.schema,
    )
    try:
        with admin(queue) as db:

            def cut() -> None:
                for pid in node_backends(db, store.node):
                    db.execute("SELECT pg_terminate_backend(%s)", (pid,))

            store.beat()
            cut()
            assert store.enqueue(record("a"), max_depth=5) == 1  # a transaction, not committed
            store.enqueue(record("b"), max_depth=5)
            cut()
            assert store.get("a") is not None  # a read
            cut()
            store.update("a", metadata={"n": 2})  # absolute values: twice is once
            cut()
            claimed = store.claim(time.time())
            assert claimed is not None
            assert claimed.id == "a"
            cut()
            store.request_cancel("a")
            # A lone autocommit write whose answer says whether it was applied: not retried.
            cut()
            with pytest.raises(psycopg.OperationalError):
                store.withdraw("b", time.time())
            assert store.withdraw("b", time.time())
            job = store.get("a")
            assert job is not None
            assert (job.metadata, job.cancel_requested) == ({"n": 2}, True)
    finally:
        store.close()


def test_a_statement_error_is_not_retried(queue: Queue) -> None:
    store = PgStore(
        queue.url,
        naming.serve_node_id("retry", 1, "0000000b"),
        capacity=1,
        node_timeout_s=5,
        schema=queue.schema,
    )
    try:
        with admin(queue) as holder:
            holder.execute("BEGIN")
            holder.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)", naming.serve_line_lock(queue.schema)
            )
            store.db.execute("SET lock_timeout = '100ms'")
            asked = time.monotonic()
            with pytest.raises(psycopg.errors.LockNotAvailable):
                store.claim(time.time())
            assert time.monotonic() - asked < 1  # one wait of 100 ms, not two
            holder.execute("COMMIT")
        assert store.claim(time.time()) is None
    finally:
        store.close()
