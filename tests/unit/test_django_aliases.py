"""Which Django aliases shoal isolates, in which test database (pure: no Django, no server)."""

from __future__ import annotations

from typing import Any

import pytest

from shoal import conninfo
from shoal.integrations.django import aliases as django_aliases
from shoal.integrations.django.aliases import database_name, resolve

PG = "django.db.backends.postgresql"


def alias(name: str, host: str = "db1", **extra: Any) -> dict[str, Any]:
    return {"ENGINE": PG, "NAME": name, "HOST": host, "PORT": "5432", "USER": "app", **extra}


def test_every_postgresql_alias_gets_its_test_database() -> None:
    found = resolve(
        {"default": alias("app"), "tenant": alias("tenant", TEST={"NAME": "t_tenant"})},
        {"default": "postgresql", "tenant": "postgresql"},
    )
    assert found.aliases == {"default": "default", "tenant": "tenant"}
    assert conninfo.dbname(found.targets["default"]) == "test_app"
    assert conninfo.dbname(found.targets["tenant"]) == "t_tenant"
    assert conninfo.params(found.targets["tenant"])["user"] == "app"
    assert found.skipped == {}


def test_a_mirror_and_an_alias_of_the_same_test_database_share_its_schema() -> None:
    found = resolve(
        {
            "default": alias("app"),
            "replica": alias("app", host="db1", TEST={"MIRROR": "default"}),
            "same": alias("other", TEST={"NAME": "test_app"}),
        },
        {"default": "postgresql", "replica": "postgresql", "same": "postgresql"},
    )
    assert list(found.targets) == ["default"]
    assert found.aliases == {"default": "default", "same": "default", "replica": "default"}


def test_aliases_on_two_servers_with_one_name_are_two_databases() -> None:
    found = resolve(
        {"default": alias("app", host="db1"), "eu": alias("app", host="db2")},
        {"default": "postgresql", "eu": "postgresql"},
    )
    assert sorted(found.targets) == ["default", "eu"]
    assert {conninfo.cluster_key(u) for u in found.targets.values()} == {"db1:5432", "db2:5432"}


def test_sqlite_and_what_mirrors_it_are_left_alone_and_said_so() -> None:
    found = resolve(
        {
            "default": alias("app"),
            "cache": {"ENGINE": "django.db.backends.sqlite3", "NAME": "cache.db"},
            "cache_ro": {"ENGINE": "django.db.backends.sqlite3", "TEST": {"MIRROR": "cache"}},
        },
        {"default": "postgresql", "cache": "sqlite", "cache_ro": "sqlite"},
    )
    assert found.aliases == {"default": "default"}
    assert set(found.skipped) == {"cache", "cache_ro"}
    notes = found.notes()
    assert any("'cache'" in n and "sqlite3" in n and "PostgreSQL only" in n for n in notes)
    assert any("'cache_ro'" in n and "mirrors 'cache'" in n for n in notes)


def test_names_a_project_chose_and_names_made_from_aliases() -> None:
    found = resolve(
        {"default": alias("app"), "Tenant-EU": alias("eu")},
        {"default": "postgresql", "Tenant-EU": "postgresql"},
        names={"default": "platform"},
    )
    assert found.aliases == {"default": "platform", "Tenant-EU": "tenant_eu"}
    assert database_name("2nd", set()) == "django_2nd"
    assert database_name("default", {"default"}) == "default_2"


def test_one_chosen_name_for_two_test_databases_is_refused() -> None:
    with pytest.raises(django_aliases.NameClash, match="'main' already names"):
        resolve(
            {"default": alias("app"), "eu": alias("eu")},
            {"default": "postgresql", "eu": "postgresql"},
            names={"default": "main", "eu": "main"},
        )


def test_test_database_name_as_django_computes_it() -> None:
    assert django_aliases.test_database_name({"NAME": "app"}) == "test_app"
    assert django_aliases.test_database_name({"NAME": "app", "TEST": {"NAME": "x"}}) == "x"
    assert django_aliases.test_database_name({"NAME": ""}) is None
