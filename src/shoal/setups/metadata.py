"""``pkg.mod:metadata``: SQLAlchemy ``MetaData.create_all`` inside the schema."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.setups.imports import import_object

if TYPE_CHECKING:
    from shoal.binding import DatabaseHandle


class MetadataKind:
    name = "metadata"
    expected = "'<module>:<attribute>' naming a SQLAlchemy MetaData"

    def parse(self, spec: str, root: Path) -> Any | None:
        target = import_object(spec)
        try:
            from sqlalchemy import MetaData
        except ImportError:
            return None
        return target if isinstance(target, MetaData) else None

    def fingerprint(self, target: Any) -> Sequence[bytes] | None:
        return metadata_ddl(target)

    def run(self, target: Any, handle: DatabaseHandle) -> None:
        from sqlalchemy.pool import NullPool

        engine = handle.create_engine(poolclass=NullPool)
        try:
            target.create_all(engine)
        finally:
            engine.dispose()


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
