"""Database setups: one path for every kind, wherever a schema is built.

:func:`load` turns a spec into a :class:`Setup`, :func:`fingerprint` hashes what it
would build (the warm pool's key), and :func:`run` builds it bound to one schema. Workers,
``shoal pool warm`` and the background refill all build through :func:`run`, which puts
the schema's binding (``PGOPTIONS``, ``PGAPPNAME``, every ``export_env`` variable) into
the environment for the duration: a setup that opens connections of its own (an
Alembic env.py reading ``DATABASE_URL``) lands in the schema being built, never in the
database the shell points at.

Kinds: shoal's four, after any registered in the ``shoal.setups`` entry point group
(each entry point names an object, or a class to instantiate, with the
:class:`SetupKind` methods).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

from shoal.errors import SetupError, UsageError
from shoal.setups.alembic import AlembicKind
from shoal.setups.callables import CallableKind
from shoal.setups.kind import Setup, SetupKind, SpecProblem
from shoal.setups.metadata import MetadataKind
from shoal.setups.sql import SqlKind

if TYPE_CHECKING:
    from shoal.binding import DatabaseHandle

__all__ = [
    "ENTRY_POINT_GROUP",
    "Setup",
    "SetupKind",
    "fingerprint",
    "kind_named",
    "kinds",
    "load",
    "run",
]

ENTRY_POINT_GROUP = "shoal.setups"
# File kinds before import kinds: `sql:x.sql` also reads as `module:attribute`. The
# callable kind last: most objects are callable.
_BUILT_IN: tuple[SetupKind, ...] = (AlembicKind(), SqlKind(), MetadataKind(), CallableKind())
# Bumped whenever what goes into a fingerprint (or how a pool schema is built) changes,
# so a newer shoal never claims a schema an older one built differently.
FORMAT = b"shoal-pool-fingerprint-1"


@functools.cache
def kinds() -> tuple[SetupKind, ...]:
    """Registered kinds first, then shoal's own."""
    found: list[SetupKind] = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = point.load()
            kind = loaded() if isinstance(loaded, type) else loaded
        except Exception as exc:  # a plugin's import runs its code
            raise SetupError(
                f"setup kind {point.name!r} ({point.value}, entry point group "
                f"{ENTRY_POINT_GROUP}) cannot be loaded: {type(exc).__name__}: {exc}"
            ) from None
        if not isinstance(kind, SetupKind):
            raise SetupError(
                f"setup kind {point.name!r} ({point.value}) has no name, expected, parse, "
                "fingerprint and run: it is not a shoal setup kind"
            )
        found.append(kind)
    return (*found, *_BUILT_IN)


def kind_named(name: str) -> SetupKind:
    """The registered kind called ``name`` (``"sql"``, ``"metadata"``, …)."""
    for kind in kinds():
        if kind.name == name:
            return kind
    raise KeyError(name)


def expected() -> str:
    return "expected " + ", ".join(kind.expected for kind in kinds())


def load(spec: str, *, key: str, source: str, root: Path) -> Setup:
    """Resolve ``spec`` now, so a typo fails before anything is created."""
    try:
        return _load(spec, root)
    except SpecProblem as exc:
        raise UsageError(key, spec, source, f"{exc}; {expected()}") from None


@functools.cache
def _load(spec: str, root: Path) -> Setup:
    # Cached: a process parses each spec once, however many times it builds from it.
    from shoal.setups.imports import import_object

    for kind in kinds():
        target = kind.parse(spec, root)
        if target is not None:
            return Setup(kind=kind, spec=spec, target=target)
    found = import_object(spec)
    if found is None:
        prefix, sep, _ = spec.partition(":")
        raise SpecProblem(f"unknown setup kind {prefix!r}" if sep else "unknown setup kind")
    raise SpecProblem(f"{spec.partition(':')[2]!r} is a {type(found).__name__}")


def fingerprint(
    setup: Setup | None, *, tail: tuple[str, ...] = (), extensions: tuple[str, ...] = ()
) -> str | None:
    """The hex SHA-256 of what ``setup`` builds with ``tail`` and ``extensions`` in view,
    or None when that cannot be known (then the database gets no warm pool)."""
    if setup is None:
        return None
    try:
        parts = setup.kind.fingerprint(setup.target)
    except Exception:
        # A setup whose fingerprint cannot be computed simply gets no pool: provisioning
        # then builds in place, and the setup's own error (if any) shows up there.
        return None
    if parts is None:
        return None
    digest = hashlib.sha256()
    head = (FORMAT, setup.kind.name.encode(), *_strings(tail), b"--", *_strings(extensions))
    for part in (*head, *parts):
        # Length-prefixed, so no two different part lists hash the same bytes.
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _strings(values: Iterable[str]) -> list[bytes]:
    return [value.encode() for value in values]


def run(setup: Setup, handle: DatabaseHandle) -> None:
    """Build ``setup`` in ``handle``'s schema, with the environment bound to that schema.

    Raises SetupError naming the database and the setup.
    """
    from shoal.binding import applied

    try:
        with applied(handle.environment(os.environ)):
            setup.kind.run(setup.target, handle)
    except Exception as exc:
        raise SetupError(
            f"setup {setup.spec!r} of database {handle.name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
