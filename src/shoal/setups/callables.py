"""``pkg.mod:callable``: a function given a psycopg connection bound to the schema.

It has a fingerprint (and so a warm pool) only when it carries one: a
``shoal_fingerprint`` attribute, a string or a function returning one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.setups.imports import import_object

if TYPE_CHECKING:
    from shoal.binding import DatabaseHandle

ATTRIBUTE = "shoal_fingerprint"


class CallableKind:
    name = "callable"
    expected = "'<module>:<attribute>' naming a callable(connection)"

    def parse(self, spec: str, root: Path) -> Any | None:
        target = import_object(spec)
        return target if callable(target) else None

    def fingerprint(self, target: Any) -> Sequence[bytes] | None:
        supplied = getattr(target, ATTRIBUTE, None)
        if callable(supplied):
            supplied = supplied()
        return [supplied.encode()] if isinstance(supplied, str) and supplied else None

    def run(self, target: Any, handle: DatabaseHandle) -> None:
        with handle.connect("setup") as conn:
            target(conn)
