"""shoal.naming: every name shoal builds, and the parsers that must read them back."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal import naming
from shoal.naming import InvalidName

AUTO_NAMESPACE = re.compile(r"p\d+t\d+r[0-9a-f]{8}")
PID_NAMESPACE = "p12345t1700000000r0123abcd"

# Linux PIDs stay below 2**22, Windows ones below 2**32; epochs have 10 digits until 2286.
pids = st.integers(min_value=1, max_value=2**32 - 1)
epochs = st.integers(min_value=0, max_value=9_999_999_999)
entropies = st.binary(min_size=4, max_size=4)
auto_namespaces = st.builds(naming.new_namespace, pids, epochs, entropies)
forced_namespaces = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=32)
namespaces = st.one_of(auto_namespaces, forced_namespaces)
worker_numbers = st.integers(min_value=0, max_value=10_000)
workers = st.one_of(worker_numbers.map(lambda n: f"gw{n}"), st.just(naming.MAIN_WORKER))
# Any text UTF-8 can encode (lone surrogates cannot be sent to PostgreSQL at all).
suffixes = st.text(st.characters(exclude_categories=["Cs"]), max_size=80)

# Derandomized: the same examples every run, so a failure here is never a fluke.
fast = settings(max_examples=100, deadline=None, derandomize=True)


def pg_truncate(label: str) -> str:
    """What PostgreSQL keeps of an application_name: 63 bytes, a cut character dropped."""
    return label.encode()[: naming.MAX_IDENTIFIER_BYTES].decode("utf-8", errors="ignore")


# -- namespaces ---------------------------------------------------------------------------


@fast
@given(pid=pids, epoch=epochs, entropy=entropies)
def test_new_namespace_is_an_auto_namespace(pid: int, epoch: int, entropy: bytes) -> None:
    token = naming.new_namespace(pid, epoch, entropy)

    assert AUTO_NAMESPACE.fullmatch(token)
    assert token == f"p{pid}t{epoch}r{entropy.hex()}"
    assert naming.is_auto_namespace(token)
    assert naming.is_namespace(token)
    assert naming.forced_namespace_problem(token) is None


@pytest.mark.parametrize("entropy", [b"", b"abc", b"abcde"])
def test_new_namespace_needs_exactly_four_bytes_of_entropy(entropy: bytes) -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        naming.new_namespace(1, 2, entropy)


@pytest.mark.parametrize(
    ("token", "auto", "valid"),
    [
        ("p1t2r0123abcd", True, True),
        ("mydebug", False, True),
        ("p1t2r0123abc", False, True),  # seven hex digits: a valid forced name, not an auto one
        ("p1t2r0123ABCD", False, False),
        ("p1t2r0123abcd0", False, True),
        ("", False, False),
        ("a_b", False, False),
        ("a" * 33, False, False),
    ],
)
def test_is_auto_namespace_and_is_namespace(token: str, auto: bool, valid: bool) -> None:
    assert naming.is_auto_namespace(token) is auto
    assert naming.is_namespace(token) is valid


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("my_debug", "underscore"),
        ("my-debug", "hyphen"),
        ("MyDebug", "capital"),
        ("a" * 33, "33 characters"),
        ("", "empty"),
        ("café", "non-ASCII"),
        ("my.debug", "other than a-z and 0-9"),
        ("my debug", "other than a-z and 0-9"),
    ],
)
def test_forced_namespace_problem_rejects_with_a_specific_reason(value: str, reason: str) -> None:
    problem = naming.forced_namespace_problem(value)

    assert problem is not None
    assert reason in problem


@pytest.mark.parametrize("value", ["a", "0", "mydebug", "ci42", "a" * 32, "p1t2r0123abcd"])
def test_forced_namespace_problem_accepts_valid_names(value: str) -> None:
    assert naming.forced_namespace_problem(value) is None


@fast
@given(value=st.one_of(st.text(max_size=40), forced_namespaces))
def test_forced_namespace_problem_agrees_with_the_documented_pattern(value: str) -> None:
    acceptable = re.fullmatch(r"[a-z0-9]{1,32}", value) is not None
    assert (naming.forced_namespace_problem(value) is None) is acceptable


# -- workers and schemas ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("xdist_worker", "expected"), [(None, "main"), ("gw0", "gw0"), ("gw17", "gw17")]
)
def test_worker_id(xdist_worker: str | None, expected: str) -> None:
    assert naming.worker_id(xdist_worker) == expected


@pytest.mark.parametrize("bad", ["master", "gw", "gwx", "GW1", "gw1a", "lease", ""])
def test_worker_id_rejects_what_is_not_an_xdist_worker(bad: str) -> None:
    with pytest.raises(InvalidName):
        naming.worker_id(bad)


@pytest.mark.parametrize(("worker", "number"), [("main", None), ("gw0", 0), ("gw123", 123)])
def test_worker_number(worker: str, number: int | None) -> None:
    assert naming.worker_number(worker) == number


@fast
@given(namespace=namespaces, worker=workers)
def test_schema_name_round_trips(namespace: str, worker: str) -> None:
    name = naming.schema_name(namespace, worker)

    assert name == f"test_{namespace}_{worker}"
    assert naming.parse_schema(name) == naming.SchemaName(namespace=namespace, worker=worker)
    # Every worker schema is a plain identifier PostgreSQL keeps whole.
    assert naming.schema_name_problem(name) is None
    assert len(name.encode()) <= naming.MAX_IDENTIFIER_BYTES


@pytest.mark.parametrize(
    ("namespace", "worker"),
    [("my_debug", "gw0"), ("MyDebug", "gw0"), ("", "main"), ("abc", "gwx"), ("abc", "lease")],
)
def test_schema_name_rejects_bad_parts(namespace: str, worker: str) -> None:
    with pytest.raises(InvalidName):
        naming.schema_name(namespace, worker)


@pytest.mark.parametrize(
    "name",
    [
        "public",
        "shoal_ext_uuid_ossp",
        "test_abc",
        "test_abc_gw",
        "test_abc_gwx",
        "test_a_b_gw0",
        "test_ABC_gw0",
        "test__gw0",
        f"test_{'a' * 33}_gw0",
        "test_abc_lease",
        "xtest_abc_gw0",
    ],
)
def test_parse_schema_ignores_other_schemas(name: str) -> None:
    assert naming.parse_schema(name) is None


# -- connection labels --------------------------------------------------------------------


@fast
@given(worker=workers, namespace=namespaces, suffix=suffixes)
def test_connection_label_fits_and_parses_back(worker: str, namespace: str, suffix: str) -> None:
    label = naming.connection_label(worker, namespace, suffix)
    full = f"pytest_{worker}_{namespace}" + (f"_{suffix}" if suffix else "")

    assert len(label.encode()) <= naming.MAX_IDENTIFIER_BYTES
    assert full.encode().startswith(label.encode())
    parsed = naming.parse_label(label)
    assert parsed is not None
    assert (parsed.worker, parsed.namespace) == (worker, namespace)
    assert not parsed.is_lease
    if suffix:
        assert parsed.suffix is not None
        assert suffix.startswith(parsed.suffix)
    else:
        assert parsed.suffix is None


@fast
@given(worker=workers, namespace=namespaces, suffix=suffixes)
def test_label_truncated_by_postgresql_still_parses(
    worker: str, namespace: str, suffix: str
) -> None:
    built = naming.connection_label(worker, namespace, suffix)
    untruncated = f"pytest_{worker}_{namespace}_{suffix}"

    for label in (pg_truncate(built), pg_truncate(untruncated)):
        parsed = naming.parse_label(label)
        assert parsed is not None
        assert (parsed.worker, parsed.namespace) == (worker, namespace)


def test_connection_label_cuts_a_multibyte_suffix_on_a_character_boundary() -> None:
    namespace = "z" * 32
    label = naming.connection_label("gw10000", namespace, "é" * 40)

    # 48 bytes of prefix, then whole two-byte characters: 7 fit, the 8th would be byte 64.
    assert len(label.encode()) == 62
    assert label == f"pytest_gw10000_{namespace}_" + "é" * 7
    parsed = naming.parse_label(label)
    assert parsed == naming.Label(worker="gw10000", namespace=namespace, suffix="é" * 7)


def test_connection_label_without_suffix() -> None:
    assert naming.connection_label("gw3", "mydebug") == "pytest_gw3_mydebug"
    assert naming.connection_label("gw3", "mydebug", "") == "pytest_gw3_mydebug"
    assert naming.parse_label("pytest_gw3_mydebug") == naming.Label("gw3", "mydebug", None)


@pytest.mark.parametrize(
    ("worker", "namespace"),
    [("gwx", "mydebug"), ("master", "mydebug"), ("gw0", "my_debug"), ("gw0", ""), ("gw0", "A")],
)
def test_connection_label_rejects_bad_parts(worker: str, namespace: str) -> None:
    with pytest.raises(InvalidName):
        naming.connection_label(worker, namespace)


@pytest.mark.parametrize(
    "label",
    ["psql", "", "pytest_", "pytest_gw0_", "pytest_gw0_My", "pytest_x_abc", "pgadmin_gw0_abc"],
)
def test_parse_label_ignores_foreign_application_names(label: str) -> None:
    assert naming.parse_label(label) is None


@fast
@given(namespace=namespaces, holder=workers)
def test_lease_label_parses_as_a_lease(namespace: str, holder: str) -> None:
    label = naming.lease_label(namespace, holder)

    parsed = naming.parse_label(label)
    assert parsed is not None
    assert parsed.is_lease
    assert (parsed.worker, parsed.namespace, parsed.suffix) == ("lease", namespace, holder)
    assert len(label.encode()) <= naming.MAX_IDENTIFIER_BYTES


# -- DDL slots and locks ------------------------------------------------------------------


def test_preferred_ddl_slot_alternates_for_schemas_whose_namespace_holds_a_pid() -> None:
    # The PID's digits come first in the name; the slot must come from gwN alone.
    slots = []
    for n in range(8):
        parsed = naming.parse_schema(naming.schema_name(PID_NAMESPACE, f"gw{n}"))
        assert parsed is not None
        slots.append(naming.preferred_ddl_slot(parsed.worker, 2))

    assert slots == [0, 1, 0, 1, 0, 1, 0, 1]


@fast
@given(
    namespace=namespaces,
    number=worker_numbers,
    slot_count=st.integers(min_value=1, max_value=16),
)
def test_preferred_ddl_slot_depends_only_on_the_worker_number(
    namespace: str, number: int, slot_count: int
) -> None:
    parsed = naming.parse_schema(naming.schema_name(namespace, f"gw{number}"))
    assert parsed is not None

    assert naming.preferred_ddl_slot(parsed.worker, slot_count) == number % slot_count


@pytest.mark.parametrize("slot_count", [1, 2, 8])
def test_main_worker_prefers_slot_zero(slot_count: int) -> None:
    assert naming.preferred_ddl_slot("main", slot_count) == 0


def test_preferred_ddl_slot_rejects_a_schema_name_and_a_zero_slot_count() -> None:
    with pytest.raises(InvalidName):
        naming.preferred_ddl_slot(naming.schema_name(PID_NAMESPACE, "gw1"), 2)
    with pytest.raises(ValueError, match="at least 1"):
        naming.preferred_ddl_slot("gw1", 0)


def test_lock_keys_are_distinct_and_fit_postgresql_int4() -> None:
    keys = [naming.ddl_slot_lock(slot) for slot in range(8)]
    keys += [naming.extension_lock(), naming.database_lock()]

    assert len(set(keys)) == len(keys)
    assert all(0 <= part < 2**31 for key in keys for part in key)
    assert {key[0] for key in keys} == {naming.LOCK_CLASS}


@pytest.mark.parametrize(
    ("extension", "schema"),
    [("uuid-ossp", "shoal_ext_uuid_ossp"), ("PostGIS", "shoal_ext_postgis"), ("hstore", None)],
)
def test_extension_schema(extension: str, schema: str | None) -> None:
    name = naming.extension_schema(extension)

    assert name == (schema or f"shoal_ext_{extension}")
    assert naming.schema_name_problem(name) is None


# -- runner token -------------------------------------------------------------------------


@fast
@given(
    pid=st.integers(min_value=1, max_value=2**32 - 1),
    started=st.floats(min_value=0, max_value=4e9, allow_nan=False),
)
def test_runner_token_round_trips(pid: int, started: float) -> None:
    parsed = naming.parse_runner_token(naming.runner_token(pid, started))

    assert parsed is not None
    assert parsed[0] == pid
    # Two decimals are kept: far finer than is_ancestor's one-second tolerance.
    assert parsed[1] == pytest.approx(started, abs=0.0051)


def test_runner_token_format() -> None:
    assert naming.runner_token(4242, 1700000000.123456) == "4242:1700000000.12"


@pytest.mark.parametrize("token", ["", "4242", "abc", "x:1.5", "12:abc", "1:2:3", ":1.5"])
def test_parse_runner_token_rejects_garbage(token: str) -> None:
    assert naming.parse_runner_token(token) is None


# -- database keys and schema names -------------------------------------------------------


@pytest.mark.parametrize("key", ["default", "app", "app_2", "_private", "a" * 63])
def test_database_key_problem_accepts(key: str) -> None:
    assert naming.database_key_problem(key) is None


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("Bad-Name", "lower-case letters"),
        ("App", "lower-case letters"),
        ("1abc", "not starting with a digit"),
        ("my app", "lower-case letters"),
        ("", "lower-case letters"),
        ("café", "lower-case letters"),
        ("a" * 64, "64 bytes"),
        ("é" * 32, "64 bytes"),
    ],
)
def test_database_key_problem_rejects(key: str, reason: str) -> None:
    problem = naming.database_key_problem(key)

    assert problem is not None
    assert reason in problem


@pytest.mark.parametrize("name", ["public", "extensions", "_x", "a$b", "shoal_ext_x", "a" * 63])
def test_schema_name_problem_accepts(name: str) -> None:
    assert naming.schema_name_problem(name) is None


@pytest.mark.parametrize(
    "name", ["Public", "1x", "$x", "a-b", "a b", "", '"quoted"', "a" * 64, "café", "é" * 32]
)
def test_schema_name_problem_rejects(name: str) -> None:
    problem = naming.schema_name_problem(name)

    assert problem is not None
    assert "63 bytes" in problem


def test_to_drop_names_round_trip_and_fit() -> None:
    longest = "a" * 32
    name = naming.to_drop_name(longest, "gw99999", "0123abcd")
    assert len(name.encode()) <= naming.MAX_IDENTIFIER_BYTES
    assert naming.parse_to_drop(name) == naming.ToDropName(longest, "gw99999", "0123abcd")
    auto = naming.new_namespace(123456, 1_700_000_000, b"\x00\x01\x02\x03")
    parsed = naming.parse_to_drop(naming.to_drop_name(auto, "main", "ffffffff"))
    assert parsed == naming.ToDropName(auto, "main", "ffffffff")
    # Never a worker schema or a pool schema, and the other way round.
    assert naming.parse_schema(name) is None
    assert naming.parse_pool_schema(name) is None
    assert naming.parse_to_drop(naming.schema_name(auto, "gw0")) is None
    assert naming.to_drop_like(auto) == f"shoaldrop\\_{auto}\\_%"


@pytest.mark.parametrize(
    ("namespace", "worker", "token"),
    [
        ("a_b", "gw0", "0123abcd"),
        ("ns", "lease", "0123abcd"),
        ("ns", "gw0", "xyz"),
        ("a" * 32, "gw" + "9" * 30, "0123abcd"),
    ],
)
def test_to_drop_name_rejects(namespace: str, worker: str, token: str) -> None:
    with pytest.raises(naming.InvalidName):
        naming.to_drop_name(namespace, worker, token)
