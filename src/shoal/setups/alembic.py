"""``alembic:<alembic.ini>``: ``alembic upgrade head`` inside the schema.

env.py scripts get the bound URL as ``sqlalchemy.url``, a shared connection in
``config.attributes["connection"]``, and the bound environment (``PGOPTIONS`` and every
``export_env`` variable), so one that builds its own engine from ``DATABASE_URL`` lands
in the schema too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal import conninfo
from shoal.setups.files import project_file

if TYPE_CHECKING:
    from shoal.binding import DatabaseHandle

# Files in an Alembic script directory that do not change what it creates.
_IGNORED_PARTS = ("__pycache__",)
_IGNORED_SUFFIXES = (".pyc", ".pyo")


class AlembicKind:
    name = "alembic"
    expected = "'alembic:<path to alembic.ini>'"

    def parse(self, spec: str, root: Path) -> Any | None:
        return project_file(spec, "alembic", root)

    def fingerprint(self, target: Any) -> Sequence[bytes] | None:
        return alembic_files(Path(target))

    def run(self, target: Any, handle: DatabaseHandle) -> None:
        from alembic import command
        from alembic.config import Config
        from sqlalchemy.pool import NullPool

        config = Config(str(target))
        # `%` is interpolation syntax in alembic's config parser.
        config.set_main_option(
            "sqlalchemy.url", conninfo.sqlalchemy_url(handle.url).replace("%", "%%")
        )
        engine = handle.create_engine(poolclass=NullPool)
        try:
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        finally:
            engine.dispose()


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
