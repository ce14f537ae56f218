"""From ``settings.DATABASES`` to the test databases shoal isolates (pure: no I/O).

Django decides which aliases share a test database (same server, same TEST NAME, or
``TEST.MIRROR``); shoal follows it, so every alias that Django points at one test
database is bound to the one worker schema in it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shoal import conninfo

# Django's own prefix for a test database named after NAME (django.db.backends.base.creation).
TEST_DATABASE_PREFIX = "test_"
# OPTIONS keys that are libpq connection parameters, carried into the URL shoal connects
# with (to create the test database and the worker schemas). Django's own keys
# (isolation_level, pool, server_side_binding, assume_role) are not.
_LIBPQ_OPTIONS = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "passfile",
    "service",
    "target_session_attrs",
    "gssencmode",
)
_NOT_A_NAME = re.compile(r"[^a-z0-9_]")


class NameClash(ValueError):
    """Two aliases with different test databases were given one shoal database name."""

    def __init__(self, alias: str, name: str) -> None:
        self.alias, self.name = alias, name
        super().__init__(f"{name!r} already names another alias's test database")


@dataclass(frozen=True)
class Resolution:
    """Which aliases shoal isolates, in which test database, and which it leaves alone."""

    # shoal database name → libpq URL of that test database (the first alias names it)
    targets: dict[str, str] = field(default_factory=dict)
    # alias → shoal database name, mirrors and aliases sharing a test database included
    aliases: dict[str, str] = field(default_factory=dict)
    # alias → why shoal leaves it alone
    skipped: dict[str, str] = field(default_factory=dict)

    def notes(self) -> list[str]:
        """One line per alias left alone, for the report header."""
        return [
            f"Django alias {alias!r} not isolated: {why}" for alias, why in self.skipped.items()
        ]


def test_database_name(settings_dict: Mapping[str, Any]) -> str | None:
    """The alias's test database name as Django computes it; None when it has none."""
    test = settings_dict.get("TEST") or {}
    if test.get("NAME"):
        return str(test["NAME"])
    name = settings_dict.get("NAME")
    return f"{TEST_DATABASE_PREFIX}{name}" if name else None


def libpq_params(settings_dict: Mapping[str, Any], dbname: str) -> dict[str, str]:
    """The libpq parameters Django would connect with, to database ``dbname``."""
    parts = {"dbname": dbname}
    for key, param in (("HOST", "host"), ("PORT", "port"), ("USER", "user")):
        if settings_dict.get(key):
            parts[param] = str(settings_dict[key])
    if settings_dict.get("PASSWORD"):
        parts["password"] = str(settings_dict["PASSWORD"])
    options = settings_dict.get("OPTIONS") or {}
    for key in _LIBPQ_OPTIONS:
        if options.get(key) not in (None, ""):
            parts[key] = str(options[key])
    return parts


def database_name(alias: str, taken: set[str]) -> str:
    """A shoal database name for ``alias``: lower case, ``[a-z0-9_]``, unique."""
    base = _NOT_A_NAME.sub("_", alias.lower()) or "django"
    if base[0].isdigit():
        base = f"django_{base}"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    return name


def resolve(
    databases: Mapping[str, Mapping[str, Any]],
    vendors: Mapping[str, str],
    names: Mapping[str, str] | None = None,
) -> Resolution:
    """Which test database each alias of ``databases`` uses, given each alias's vendor.

    ``names`` maps aliases to the shoal database names a project chose for them.
    """
    result = Resolution()
    by_signature: dict[tuple[str, str], str] = {}
    mirrors: dict[str, str] = {}
    for alias, settings_dict in databases.items():
        test = settings_dict.get("TEST") or {}
        if test.get("MIRROR"):
            mirrors[alias] = str(test["MIRROR"])
            continue
        vendor = vendors.get(alias, "")
        if vendor != "postgresql":
            engine = settings_dict.get("ENGINE", "?")
            result.skipped[alias] = (
                f"engine {engine} ({vendor or 'unknown'}); shoal isolates PostgreSQL only"
            )
            continue
        test_name = test_database_name(settings_dict)
        if test_name is None:
            result.skipped[alias] = "it names no database (NAME and TEST NAME are empty)"
            continue
        url = conninfo.build_url(libpq_params(settings_dict, test_name))
        signature = (conninfo.cluster_key(url), test_name)
        if signature in by_signature:  # Django creates it once and points both aliases at it
            result.aliases[alias] = by_signature[signature]
            continue
        wanted = (names or {}).get(alias)
        if wanted is not None and wanted in result.targets:
            raise NameClash(alias, wanted)
        name = wanted or database_name(alias, set(result.targets))
        by_signature[signature] = name
        result.targets[name] = url
        result.aliases[alias] = name
    for alias, mirrored in mirrors.items():
        if mirrored in result.aliases:
            result.aliases[alias] = result.aliases[mirrored]
        else:
            why = result.skipped.get(mirrored, "that alias is not in DATABASES")
            result.skipped[alias] = f"it mirrors {mirrored!r}, which is not isolated ({why})"
    return result
