"""The PostgreSQL queue seen from two nodes at once: one line, one depth, liveness, labels."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from shoal import naming
from shoal.service.models import JobStatus
from shoal.service.pgstore import PgStore
from shoal.service.queue import QueueFull
from shoal.service.store import Job
from tests.service.conftest import Queue

pytestmark = pytest.mark.parametrize("queue_kind", ["embedded", "external"], indirect=True)


def job(job_id: str) -> Job:
    return Job(
        id=job_id,
        kind="execute",
        status=JobStatus.queued,
        prompt="x",
        agent="a",
        model=None,
        ref=None,
        timeout_s=60,
        metadata={"n": 1},
        save_branch=False,
        queued_at=time.time(),
    )


@pytest.fixture
def two(queue: Queue | None) -> Iterator[tuple[PgStore, PgStore]]:
    assert queue is not None
    stores = tuple(
        PgStore(
            queue.url,
            naming.serve_node_id(name, 1, "0000000" + name[-1]),
            capacity=2,
            node_timeout_s=0.5,
            schema=queue.schema,
        )
        for name in ("a1", "b2")
    )
    for store in stores:
        store.beat()
    yield stores[0], stores[1]
    for store in stores:
        store.close()


def test_one_line_and_one_depth_for_both_nodes(two: tuple[PgStore, PgStore]) -> None:
    a, b = two
    positions = [(a if i % 2 else b).enqueue(job(f"j{i}"), max_depth=5) for i in range(5)]
    assert positions == [1, 2, 3, 4, 5]
    with pytest.raises(QueueFull):
        a.enqueue(job("over"), max_depth=5)
    assert b.withdraw("j1", time.time())
    claimed = [(a if i % 2 else b).claim(time.time()) for i in range(5)]
    assert [c.id if c else None for c in claimed] == ["j0", "j2", "j3", "j4", None]
    assert [c.node for c in claimed if c] == [b.node, a.node, b.node, a.node]
    claims = [c.claim_seq or 0 for c in claimed if c]
    assert claims == sorted(claims)
    assert b.get("j0") == claimed[0]
    assert b.get("j0").metadata == {"n": 1}  # type: ignore[union-attr]


def test_a_finished_record_is_final(two: tuple[PgStore, PgStore]) -> None:
    a, _ = two
    a.enqueue(job("j"), max_depth=5)
    assert a.claim(time.time()) is not None
    a.update("j", status=JobStatus.interrupted, finished_at=time.time())
    a.update("j", status=JobStatus.completed, exit_code=0)
    assert a.get("j").status is JobStatus.interrupted  # type: ignore[union-attr]


def test_a_cancel_asked_anywhere_reaches_the_running_node(two: tuple[PgStore, PgStore]) -> None:
    a, b = two
    a.enqueue(job("j"), max_depth=5)
    assert a.claim(time.time()) is not None
    assert a.to_stop(["j"]) == []
    b.request_cancel("j")
    assert a.to_stop(["j"]) == ["j"]


def test_a_silent_node_loses_its_running_jobs_not_its_queued_ones(
    two: tuple[PgStore, PgStore],
) -> None:
    a, b = two
    a.enqueue(job("run"), max_depth=5)
    a.enqueue(job("wait"), max_depth=5)
    assert a.claim(time.time()) is not None
    assert b.reap(time.time()).running == {}
    time.sleep(0.7)  # a stops beating; b goes on
    b.beat()
    reaped = b.reap(time.time())
    assert reaped.running == {"run": a.host}
    assert b.get("run").status is JobStatus.interrupted  # type: ignore[union-attr]
    assert b.get("wait").status is JobStatus.queued  # type: ignore[union-attr]
    assert a.to_stop(["run"]) == ["run"]  # a, back, stops what the fleet took from it
    alive = {n.node: n.alive for n in b.fleet()}
    assert alive == {a.node: False, b.node: True}


def test_connections_are_labelled_and_nothing_is_in_public(
    two: tuple[PgStore, PgStore],
) -> None:
    a, b = two
    labels = {
        row["application_name"]
        for row in a.db.execute(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
        ).fetchall()
    }
    assert {naming.serve_label(a.node), naming.serve_label(b.node)} <= labels
    row = a.db.execute(
        "SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'public' "
        "AND tablename IN ('jobs', 'nodes')"
    ).fetchone()
    assert row is not None
    assert row["n"] == 0


def test_a_claim_asked_before_a_job_was_queued_starts_it_when_it_was_queued(
    two: tuple[PgStore, PgStore],
) -> None:
    a, b = two
    queued = job("late")
    b.enqueue(queued, max_depth=5)
    # Asked for before the job came (the claim waited for the line's lock meanwhile).
    claimed = a.claim(queued.queued_at - 1.0)
    assert claimed is not None
    assert claimed.started_at == queued.queued_at
