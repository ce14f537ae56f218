"""What the last pool refill of a project did, kept where the next run can read it.

A refill runs detached after a run, so its failures would otherwise be seen by nobody:
``shoal pool warm`` records per database the first line of what went wrong (or that it
went well) in ``<home>/logs/``, one file per project, and the next run's summary and
``shoal pool status`` report it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from shoal import naming

RECORD_FORMAT = 1


@dataclass(frozen=True)
class RefillRecord:
    finished: str  # ISO time, UTC
    namespace: str
    errors: dict[str, str] = field(default_factory=dict)  # database ("*": all) → first line
    log: str | None = None  # the refill's log file, when it ran in the background

    @property
    def failed(self) -> bool:
        return bool(self.errors)


def path(home: Path, project_root: Path) -> Path:
    """``<home>/logs/pool-refill_<12 hex of the project root>.json``."""
    key = naming.project_key(str(project_root.resolve()))
    return home / "logs" / naming.refill_record_filename(key)


def write(home: Path, project_root: Path, record: RefillRecord) -> None:
    """Atomically, so a reader never sees half a record; best effort (a log, not data)."""
    target = path(home, project_root)
    data = {"format": RECORD_FORMAT, **record.__dict__}
    with contextlib.suppress(OSError):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".refill-")
        with os.fdopen(fd, "w") as out:
            json.dump(data, out)
        os.replace(temporary, target)


def read(home: Path, project_root: Path) -> RefillRecord | None:
    try:
        data = json.loads(path(home, project_root).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
        return None
    errors = data.get("errors")
    return RefillRecord(
        finished=str(data.get("finished", "")),
        namespace=str(data.get("namespace", "")),
        errors={str(k): str(v) for k, v in errors.items()} if isinstance(errors, dict) else {},
        log=str(data["log"]) if data.get("log") else None,
    )


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
