"""Django's database mode: worker database and template names, built and read back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal import naming
from tests.unit.test_naming import fast, namespaces, workers

# Test database names as Django computes them: test_<NAME>, any NAME a project may use.
test_databases = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.", min_size=1, max_size=63
).map(lambda name: f"test_{name}")


@fast
@given(test_databases, namespaces, workers)
def test_worker_database_names_fit_and_parse_back(base: str, namespace: str, worker: str) -> None:
    name = naming.worker_database_name(base, namespace, worker)
    assert len(name.encode()) <= naming.MAX_IDENTIFIER_BYTES
    parsed = naming.parse_worker_database(name)
    assert parsed is not None
    assert (parsed.namespace, parsed.worker) == (namespace, worker)
    assert naming.parse_schema(name) is None  # never mistaken for a worker schema


def test_a_short_name_is_kept_a_long_one_shortened_apart() -> None:
    namespace = "p1234567t1764600000r0123abcd"
    assert naming.worker_database_name("test_shop", namespace, "gw0") == (
        f"test_shop_{namespace}_gw0"
    )
    one = naming.worker_database_name("test_" + "a" * 40 + "_one", namespace, "gw0")
    two = naming.worker_database_name("test_" + "a" * 40 + "_two", namespace, "gw0")
    assert one != two
    assert one.endswith(f"_{namespace}_gw0")


@pytest.mark.parametrize(
    "name",
    [
        "test_shop",  # Django's own test database
        "test_shop_gw0",  # pytest-django's per-worker one: no namespace
        "shoaltpl_0123456789ab",
        "test_shop_p1t2r3_gw0x",
        "test__p1_gw0",
    ],
)
def test_other_names_are_not_worker_databases(name: str) -> None:
    assert naming.parse_worker_database(name) is None


def test_template_names_parse_back() -> None:
    fingerprint = "0123456789abcdef" * 4
    name = naming.template_database_name(fingerprint)
    assert name == "shoaltpl_0123456789ab"
    assert naming.parse_template_database(name) == fingerprint[:12]
    with pytest.raises(naming.InvalidName):
        naming.template_database_name("not hex")
    with pytest.raises(naming.InvalidName):
        naming.worker_database_name("test_shop", "with_underscore", "gw0")
