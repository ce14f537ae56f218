"""Pool schema names, lock keys and refill log names: built and parsed in naming.py only."""

from __future__ import annotations

import pytest

from shoal import naming

FP = "0123456789abcdef" * 4


@pytest.mark.parametrize("ready", [True, False])
def test_pool_names_round_trip(ready: bool) -> None:
    name = naming.pool_schema_name(FP, "deadbeef", ready=ready)
    assert name == f"{'shoalpool' if ready else 'shoalbuild'}_0123456789ab_deadbeef"
    parsed = naming.parse_pool_schema(name)
    assert parsed == naming.PoolSchemaName("0123456789ab", "deadbeef", ready)
    assert naming.fingerprint_matches(parsed, FP)
    assert not naming.fingerprint_matches(parsed, "f" * 64)
    assert len(name.encode()) <= naming.MAX_IDENTIFIER_BYTES
    assert name.startswith(naming.pool_ready_prefix(FP)) is ready


def test_pool_and_worker_schema_names_never_parse_as_each_other() -> None:
    pooled = naming.pool_schema_name(FP, "00000000", ready=True)
    building = naming.pool_schema_name(FP, "00000000", ready=False)
    worker = naming.schema_name("p1t2r0badcafe", "gw0")
    assert naming.parse_schema(pooled) is None
    assert naming.parse_schema(building) is None
    assert naming.parse_pool_schema(worker) is None
    assert naming.parse_pool_schema(naming.extension_schema("pg_trgm")) is None


@pytest.mark.parametrize(
    "name",
    [
        "shoalpool_0123456789ab_deadbee",  # short token
        "shoalpool_0123456789AB_deadbeef",  # upper case
        "shoalpool_0123456789a_deadbeef",  # short fingerprint
        "shoalpool_0123456789ab_deadbeef_x",
        "xshoalpool_0123456789ab_deadbeef",
        "shoalready_0123456789ab_deadbeef",
    ],
)
def test_parse_pool_rejects_lookalikes(name: str) -> None:
    assert naming.parse_pool_schema(name) is None


@pytest.mark.parametrize(
    ("fingerprint", "token"), [("xyz", "deadbeef"), (FP, "DEADBEEF"), (FP, "")]
)
def test_pool_name_refuses_bad_parts(fingerprint: str, token: str) -> None:
    with pytest.raises(naming.InvalidName):
        naming.pool_schema_name(fingerprint, token, ready=True)


def test_pool_lock_keys_live_in_their_own_classes() -> None:
    classes = {naming.LOCK_CLASS, naming.POOL_CLAIM_CLASS, naming.POOL_REFILL_CLASS}
    assert len(classes) == 3
    a = naming.pool_claim_lock("shoalpool_0123456789ab_00000000")
    b = naming.pool_claim_lock("shoalpool_0123456789ab_00000001")
    assert a[0] == naming.POOL_CLAIM_CLASS
    assert a != b
    assert naming.pool_refill_lock(FP)[0] == naming.POOL_REFILL_CLASS
    assert all(0 <= key < 2**31 for key in (*a, *b, *naming.pool_refill_lock(FP)))


def test_pool_log_filename_round_trip() -> None:
    name = naming.pool_log_filename("p1t2r0badcafe")
    assert naming.parse_pool_log_filename(name) == "p1t2r0badcafe"
    assert naming.parse_pool_log_filename("pool-warm_x_y.log") is None
    with pytest.raises(naming.InvalidName):
        naming.pool_log_filename("../etc")
