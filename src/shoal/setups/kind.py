"""What a setup kind is: parse a spec, fingerprint what it builds, build it bound to a schema.

shoal ships four kinds (SQLAlchemy metadata, Alembic, a SQL file, a callable); a package
adds one by naming an object with these three methods in the ``shoal.setups`` entry
point group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from shoal.binding import DatabaseHandle


class SpecProblem(ValueError):
    """A spec this kind recognises but cannot use; the message says why."""


@runtime_checkable
class SetupKind(Protocol):
    """One way to build a database's schema."""

    # Shown in messages, and part of the fingerprint: two kinds never share a pool.
    name: str
    # How a spec of this kind is written, e.g. "sql:<path to .sql file>".
    expected: str

    def parse(self, spec: str, root: Path) -> Any | None:
        """What ``spec`` names (a file, an imported object), or None when it is not a spec
        of this kind. Relative paths are relative to ``root``. Raises SpecProblem."""
        ...

    def fingerprint(self, target: Any) -> Sequence[bytes] | None:
        """Bytes that decide what :meth:`run` builds, or None when that cannot be known
        (the database then gets no warm pool)."""
        ...

    def run(self, target: Any, handle: DatabaseHandle) -> None:
        """Build inside ``handle``'s schema; the environment is already bound to it."""
        ...


@dataclass(frozen=True)
class Setup:
    """A database's setup, parsed: its kind, the spec as written, what the spec names."""

    kind: SetupKind
    spec: str
    target: Any = field(repr=False, compare=False)
