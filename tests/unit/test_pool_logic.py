"""Pool decisions without a server: which pool schemas the sweep drops, how ps counts them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shoal import naming
from shoal.pg.pool import PoolCount, State, parse_pool, pool_comment
from shoal.pg.pool import counts as pool_counts
from shoal.pg.sweep import Found, decide, decide_pool

NOW = datetime.now(UTC)
OLD = NOW - timedelta(hours=1)
FP_OLD = "a" * 64
FP_NEW = "b" * 64
BUILDER = "p1t2r0badcafe"


def found(fp: str, state: State, *, ready: bool, when: datetime = OLD, ns: str = BUILDER) -> Found:
    name = naming.pool_schema_name(fp, "0000beef", ready=ready)
    return Found("app", name, pool_comment(state, fp, ns, now=when))


def reason(
    f: Found,
    current: frozenset[str] | None,
    live: frozenset[str] = frozenset(),
    complete: bool = True,
) -> object:
    decision = decide_pool(f, set(live), complete, NOW, 60, current)
    return "drop" if decision.drop else decision.reason


def test_ready_schemas_of_a_stale_fingerprint_go_after_the_grace_period() -> None:
    assert reason(found(FP_OLD, "ready", ready=True), frozenset({FP_NEW})) == "drop"
    assert reason(found(FP_NEW, "ready", ready=True), frozenset({FP_NEW})) == "pool_current"
    young = found(FP_OLD, "ready", ready=True, when=NOW)
    assert reason(young, frozenset({FP_NEW})) == "too_young"
    # The database no longer has a fingerprinted setup: its pool is stale.
    assert reason(found(FP_OLD, "ready", ready=True), frozenset()) == "drop"


def test_unknown_current_fingerprint_keeps_ready_schemas() -> None:
    assert reason(found(FP_OLD, "ready", ready=True), None) == "pool_fingerprint_unknown"


def test_half_built_schemas_go_only_when_their_builder_is_dead() -> None:
    building = found(FP_NEW, "building", ready=False)
    assert reason(building, frozenset({FP_NEW})) == "drop"
    assert reason(building, frozenset({FP_NEW}), live=frozenset({BUILDER})) == "live"
    assert reason(found(FP_NEW, "building", ready=False, when=NOW), None) == "too_young"
    assert reason(found(FP_NEW, "dropping", ready=False), None) == "drop"


def test_pool_decisions_fail_closed() -> None:
    assert reason(found(FP_OLD, "ready", ready=True), frozenset(), complete=False) == (
        "active_detection_incomplete"
    )
    # A state that does not match the name, a comment that is not shoal's, a fingerprint
    # that does not match the name: never dropped.
    mismatched = found(FP_OLD, "building", ready=True)
    assert reason(mismatched, frozenset()) == "not_shoal"
    name = naming.pool_schema_name(FP_OLD, "0000beef", ready=True)
    assert reason(Found("app", name, "hand made"), frozenset()) == "not_shoal"
    wrong_fp = Found("app", name, pool_comment("ready", FP_NEW, BUILDER, now=OLD))
    assert reason(wrong_fp, frozenset()) == "not_shoal"
    assert reason(Found("app", "shoalpool_x", None), frozenset()) == "unparseable"


def test_worker_rules_never_see_pool_schemas_as_worker_schemas() -> None:
    f = found(FP_OLD, "ready", ready=True)
    assert decide(f, set(), True, NOW, 60).reason == "unparseable"


def test_pool_counts_per_database_and_fingerprint() -> None:
    entries = [
        parse_pool("app", f.schema + suffix, f.comment)
        for f, suffix in [
            (found(FP_NEW, "ready", ready=True), ""),
            (found(FP_NEW, "building", ready=False), ""),
            (found(FP_OLD, "ready", ready=True), ""),
        ]
    ]
    counts = pool_counts(e for e in entries if e is not None)
    assert counts == [
        PoolCount("app", FP_OLD[:12], ready=1, building=0, dropping=0),
        PoolCount("app", FP_NEW[:12], ready=1, building=1, dropping=0),
    ]
