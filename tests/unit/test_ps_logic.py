"""shoal ps without a server: owner comments, liveness, and how namespaces are summarised."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from shoal import naming
from shoal.pg import schemas
from shoal.pg.live import ClusterLiveness
from shoal.pg.ps import summarise, worker_schemas

NOW = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
OLD, NEW = "p1t1700000000r00000001", "p2t1700000000r00000002"


def comment(namespace: str, worker: str, minutes_ago: float) -> str:
    return schemas.owner_comment(namespace, worker, NOW - timedelta(minutes=minutes_ago))


def probe(
    reachable: bool = True, live: set[str] | None = None, leases: dict[str, list[str]] | None = None
) -> ClusterLiveness:
    return ClusterLiveness(
        cluster="h:5432",
        url="postgresql://h/db",
        reachable=reachable,
        live=live or set(),
        lease_holders=leases or {},
    )


def listed() -> list[tuple[str, str | None]]:
    return [
        (naming.schema_name(OLD, "gw10"), comment(OLD, "gw10", 30)),
        (naming.schema_name(OLD, "gw2"), comment(OLD, "gw2", 31)),
        (naming.schema_name(NEW, "main"), comment(NEW, "main", 1)),
        ("test_not_a_worker_schema", None),
        ("test_Upper_gw0", None),
    ]


def test_only_worker_schemas_are_listed_and_owners_read() -> None:
    found = worker_schemas("app", listed())
    assert [(s.namespace, s.worker) for s in found] == [(OLD, "gw10"), (OLD, "gw2"), (NEW, "main")]
    owner = found[0].owner
    assert owner is not None
    assert owner.created == NOW - timedelta(minutes=30)
    assert owner.host
    assert owner.pid


def test_an_owner_comment_for_another_namespace_or_malformed_is_no_owner() -> None:
    schema = naming.schema_name(OLD, "gw0")
    [foreign] = worker_schemas("app", [(schema, comment(NEW, "gw0", 5))])
    [garbage] = worker_schemas("app", [(schema, "hand-written note")])
    odd = {"shoal": 1, "namespace": OLD, "created": "2026-01-01T00:00:00", "pid": "12", "host": 7}
    [naive] = worker_schemas("app", [(schema, json.dumps(odd))])
    assert foreign.owner is None
    assert garbage.owner is None
    assert naive.owner is not None
    assert (naive.owner.created, naive.owner.pid, naive.owner.host) == (None, None, None)


def test_live_dead_and_label_only_namespaces() -> None:
    found = worker_schemas("app", listed()) + worker_schemas("tenant", listed()[:1])
    labelled_only = "forcedrun"
    result = summarise(found, [probe(live={NEW, labelled_only}, leases={NEW: ["main"]})])
    by_name = {n.namespace: n for n in result}
    assert [n.namespace for n in result] == [NEW, labelled_only, OLD]  # live first, oldest first

    old = by_name[OLD]
    assert old.status == "dead"
    assert old.workers == ("gw2", "gw10")  # by worker number, not as text
    assert old.databases == ("app", "tenant")
    assert old.created == NOW - timedelta(minutes=31)
    assert old.age_s(NOW) == 31 * 60
    assert len(old.owners) == 1
    assert old.lease_holders == ()

    assert by_name[NEW].status == "live"
    assert by_name[NEW].lease_holders == ("main",)
    only = by_name[labelled_only]
    assert (only.status, only.workers, only.databases, only.created) == ("live", (), (), None)
    assert only.age_s(NOW) is None


def test_an_unreachable_cluster_makes_the_not_live_unknown() -> None:
    found = worker_schemas("app", listed())
    result = summarise(found, [probe(live={NEW}), probe(reachable=False)])
    assert {n.namespace: n.status for n in result} == {NEW: "live", OLD: "unknown"}


def test_json_is_stable() -> None:
    [status] = summarise(worker_schemas("app", listed()[2:3]), [probe()])
    data = status.as_json(NOW)
    assert data["status"] == "dead"
    assert data["age_s"] == 60.0
    assert set(data) == {
        "namespace",
        "status",
        "created",
        "age_s",
        "owners",
        "workers",
        "databases",
        "lease_holders",
        "to_drop",
    }


def test_schemas_renamed_for_dropping_are_counted_as_to_drop() -> None:
    namespace = "p1t2r0000000a"
    renamed = naming.to_drop_name(namespace, "gw0", "0123abcd")
    comment = schemas.owner_comment(namespace, "gw0", now=NOW)
    found = worker_schemas("app", [(renamed, comment), ("shoaldrop_x", comment)])
    assert [(s.worker, s.to_drop) for s in found] == [("gw0", True)]
    [status] = summarise(found, [probe()])
    assert status.to_drop == 1
    assert status.workers == ("gw0",)
    assert status.as_json(NOW)["to_drop"] == 1
