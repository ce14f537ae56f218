"""A database's setup hook, parsed up front and run inside one worker schema.

Kinds: ``alembic:<alembic.ini>``, ``sql:<file.sql>``, or ``<module>:<attribute>`` naming
either a SQLAlchemy ``MetaData`` (``create_all``) or a callable given a psycopg
connection bound to the schema. Every kind sees only the worker schema on its search
path, so nothing it creates can land anywhere shared.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psycopg

from shoal.errors import SetupError, UsageError

Kind = Literal["metadata", "alembic", "sql", "callable"]
_IMPORT_PATH = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
EXPECTED = (
    "expected 'alembic:<path to alembic.ini>', 'sql:<path to .sql file>', "
    "or '<module>:<attribute>' naming a SQLAlchemy MetaData or a callable(connection)"
)


@dataclass(frozen=True)
class SetupHook:
    kind: Kind
    spec: str
    target: Any  # the MetaData, the callable, or the resolved file path


def parse_setup(spec: str, *, key: str, source: str, root: Path) -> SetupHook:
    """Resolve a setup spec now, so a typo fails before anything is created."""
    kind, _, rest = spec.partition(":")
    if kind in ("alembic", "sql") and rest:
        path = Path(rest) if Path(rest).is_absolute() else root / rest
        if not path.is_file():
            raise UsageError(key, spec, source, f"{path} does not exist; {EXPECTED}")
        return SetupHook(kind=kind, spec=spec, target=path)  # type: ignore[arg-type]
    if _IMPORT_PATH.fullmatch(spec) is None:
        raise UsageError(key, spec, source, f"unknown setup kind; {EXPECTED}")
    module_name, _, attribute = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # an import runs user code: any error is the user's to fix
        # `kind:path` with an unknown kind reads like `module:attribute`; say both.
        missing = isinstance(exc, ModuleNotFoundError) and exc.name == module_name
        what = (
            f"unknown setup kind {module_name!r}, and no module of that name can be imported"
            if missing and "." not in module_name
            else f"module {module_name!r} cannot be imported"
        )
        raise UsageError(
            key, spec, source,
            f"{what} ({type(exc).__name__}: {exc}); make the module importable "
            f"(e.g. pytest's `pythonpath` ini option) or fix the spec; {EXPECTED}",
        ) from None  # fmt: skip
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise UsageError(
                key, spec, source, f"{module_name} has no attribute {attribute!r}; {EXPECTED}"
            )
        target = getattr(target, part)
    if _is_metadata(target):
        return SetupHook(kind="metadata", spec=spec, target=target)
    if callable(target):
        return SetupHook(kind="callable", spec=spec, target=target)
    raise UsageError(key, spec, source, f"{attribute!r} is a {type(target).__name__}; {EXPECTED}")


def _is_metadata(obj: object) -> bool:
    try:
        from sqlalchemy import MetaData
    except ImportError:
        return False
    return isinstance(obj, MetaData)


def sqlalchemy_url(libpq_url: str) -> str:
    """The SQLAlchemy form of a libpq URL, for the psycopg 3 driver."""
    scheme, sep, rest = libpq_url.partition("://")
    return f"postgresql+psycopg{sep}{rest}" if scheme in ("postgresql", "postgres") else libpq_url


def run_setup(
    hook: SetupHook,
    bound_url: str,
    connect: Callable[[], psycopg.Connection[tuple[object, ...]]],
    database: str,
) -> None:
    """Run ``hook`` with ``bound_url`` (search path = the worker schema)."""
    try:
        if hook.kind == "metadata":
            _create_all(hook.target, bound_url)
        elif hook.kind == "alembic":
            _alembic_upgrade(hook.target, bound_url)
        elif hook.kind == "sql":
            with connect() as conn:
                conn.execute(Path(hook.target).read_text(encoding="utf-8"))
        else:
            with connect() as conn:
                hook.target(conn)
    except Exception as exc:
        raise SetupError(
            f"setup {hook.spec!r} of database {database!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _engine(bound_url: str) -> Any:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    return create_engine(sqlalchemy_url(bound_url), poolclass=NullPool)


def _create_all(metadata: Any, bound_url: str) -> None:
    engine = _engine(bound_url)
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()


def _alembic_upgrade(ini: Path, bound_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config(str(ini))
    # `%` is interpolation syntax in alembic's config parser.
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(bound_url).replace("%", "%%"))
    engine = _engine(bound_url)
    try:
        with engine.begin() as connection:
            # env.py scripts written for sharing a connection pick this one up; those that
            # build their own engine read the URL above or the exported environment.
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()
