"""A database setup's fingerprint: a hash of what the setup would create.

Two schemas built from setups with the same fingerprint are interchangeable, which is
what lets a worker claim a schema from the warm pool instead of building its own. So
the hash covers exactly what decides the result: the DDL ``create_all`` would emit for
SQLAlchemy metadata, every file of an Alembic script directory, the bytes of a SQL file,
or a fingerprint the user attaches to a callable (``shoal_fingerprint``). The configured
search-path tail and extensions are part of it too: the setup runs with them in view.
A callable without a fingerprint has none, and its database gets no pool.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from shoal.pg.setup import SetupHook
from shoal.pg.targets import Target

# Bumped whenever what goes into the hash (or how a pool schema is built) changes, so a
# newer shoal never claims a schema an older one built differently.
FORMAT = b"shoal-pool-fingerprint-1"
ATTRIBUTE = "shoal_fingerprint"
# Files in an Alembic script directory that do not change what it creates.
_IGNORED_PARTS = ("__pycache__",)
_IGNORED_SUFFIXES = (".pyc", ".pyo")


def fingerprint(
    hook: SetupHook | None, *, tail: tuple[str, ...] = (), extensions: tuple[str, ...] = ()
) -> str | None:
    """The hex SHA-256 fingerprint of ``hook``, or None when it cannot have one."""
    if hook is None:
        return None
    try:
        parts = _parts(hook)
    except Exception:
        # A setup whose fingerprint cannot be computed simply gets no pool: provisioning
        # then builds in place, and the setup's own error (if any) shows up there.
        return None
    if parts is None:
        return None
    digest = hashlib.sha256()
    for part in (FORMAT, hook.kind.encode(), *_strings(tail), b"--", *_strings(extensions), *parts):
        # Length-prefixed, so no two different part lists hash the same bytes.
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def target_fingerprint(target: Target, tail: tuple[str, ...]) -> str | None:
    """The fingerprint of a configured database: its setup, configured tail and extensions."""
    return fingerprint(target.setup, tail=tail, extensions=target.extensions)


def _strings(values: Iterable[str]) -> list[bytes]:
    return [value.encode() for value in values]


def _parts(hook: SetupHook) -> list[bytes] | None:
    if hook.kind == "metadata":
        return metadata_ddl(hook.target)
    if hook.kind == "alembic":
        return alembic_files(Path(hook.target))
    if hook.kind == "sql":
        return [Path(hook.target).read_bytes()]
    supplied = getattr(hook.target, ATTRIBUTE, None)
    if callable(supplied):
        supplied = supplied()
    if isinstance(supplied, str) and supplied:
        return [supplied.encode()]
    return None


def metadata_ddl(metadata: Any) -> list[bytes]:
    """Every statement ``create_all`` would emit on PostgreSQL, rendered, sorted.

    A mock engine records the statements without a server, including enum types,
    sequences, indexes and comments. Sorted, so import order cannot change the hash.
    """
    from sqlalchemy import create_mock_engine
    from sqlalchemy.dialects import postgresql

    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    rendered: list[str] = []

    def record(statement: Any, *_args: Any, **_kwargs: Any) -> None:
        rendered.append(str(statement.compile(dialect=dialect)).strip())

    engine = create_mock_engine("postgresql+psycopg://", record)
    metadata.create_all(engine, checkfirst=False)
    return [statement.encode() for statement in sorted(rendered)]


def alembic_files(ini: Path) -> list[bytes]:
    """The ini file and every file of the script directory and version locations, sorted."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config(str(ini))
    location = config.get_main_option("script_location")
    # Alembic resolves a relative location from the working directory (the project root
    # in a run); from elsewhere, the ini file's directory is the best guess.
    relative = bool(location) and ":" not in str(location) and not Path(str(location)).is_absolute()
    if relative and not Path(str(location)).is_dir() and (ini.parent / str(location)).is_dir():
        config.set_main_option("script_location", str(ini.parent / str(location)))
    script = ScriptDirectory.from_config(config)
    roots = [Path(script.dir), *(Path(p) for p in script.version_locations or ())]
    files: dict[str, Path] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for path in root.rglob("*"):
            if path.is_file() and not _ignored(path):
                files.setdefault(path.resolve().as_posix(), path)
    base = Path(script.dir).resolve()
    parts = [b"alembic.ini", ini.read_bytes()]
    for key in sorted(files):
        path = Path(key)
        # Relative names, so the same project checked out elsewhere hashes the same.
        name = path.relative_to(base).as_posix() if path.is_relative_to(base) else path.name
        parts += [name.encode(), files[key].read_bytes()]
    return parts


def _ignored(path: Path) -> bool:
    return any(part in _IGNORED_PARTS for part in path.parts) or path.suffix in _IGNORED_SUFFIXES
