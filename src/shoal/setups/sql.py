"""``sql:<file.sql>``: one SQL file run inside the schema."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.setups.files import project_file

if TYPE_CHECKING:
    from shoal.binding import DatabaseHandle


class SqlKind:
    name = "sql"
    expected = "'sql:<path to .sql file>'"

    def parse(self, spec: str, root: Path) -> Any | None:
        return project_file(spec, "sql", root)

    def fingerprint(self, target: Any) -> Sequence[bytes] | None:
        return [Path(target).read_bytes()]

    def run(self, target: Any, handle: DatabaseHandle) -> None:
        with handle.connect("setup") as conn:
            conn.execute(Path(target).read_text(encoding="utf-8"))
