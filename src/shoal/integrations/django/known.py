"""The Django test databases shoal has put schemas in, remembered for ``shoal sweep`` and
``shoal ps``: a project that configures no ``[tool.shoal]`` names them nowhere else.

One small JSON file per project (``naming.project_key`` of its root) under shoal's home,
written under a file lock: a sweep in one project never looks at another's databases
(an unreachable one would make it drop nothing). A database stays listed until it is
gone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from filelock import FileLock

from shoal import conninfo, naming

DIRECTORY = "django-databases"


def path(home: Path, project: str) -> Path:
    return home / DIRECTORY / naming.django_databases_filename(project)


def remember(home: Path, project: str, databases: dict[str, str]) -> None:
    """Add ``databases`` (name → libpq URL) to the list; the file is private to its user
    (a URL may carry a password, as Django's settings do)."""
    file = path(home, project)
    file.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(file) + ".lock", timeout=10):
        known = read(home, project)
        changed = False
        for name, url in databases.items():
            if url not in known.values():
                key = name if name not in known else f"{name}@{conninfo.cluster_key(url)}"
                known[key] = url
                changed = True
        if changed:
            tmp = file.with_suffix(f".{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(known, out, indent=1, sort_keys=True)
            os.replace(tmp, file)


def read(home: Path, project: str) -> dict[str, str]:
    """name → libpq URL of every Django test database remembered for ``project``."""
    try:
        data = json.loads(path(home, project).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str)}


def named(home: Path, project: str, taken: set[str]) -> dict[str, str]:
    """The remembered databases under names that do not clash with ``taken`` (the
    project's configured databases), as ``django:<name>``."""
    listed = {naming.django_listing_name(name): url for name, url in read(home, project).items()}
    return {name: url for name, url in listed.items() if name not in taken}


def reachable(home: Path, project: str, taken: set[str], timeout: int) -> dict[str, str]:
    """Like :func:`named`, less the databases that are gone (forgotten for good).

    A server that does not answer keeps its databases listed: the sweep must then see
    it unreachable and drop nothing (fail closed), not forget it.
    """
    import psycopg

    from shoal import naming

    found = named(home, project, taken)
    gone = []
    for name, url in found.items():
        try:
            psycopg.connect(
                url,
                connect_timeout=timeout,
                options="",
                application_name=naming.tool_label("probe"),
            ).close()
        except psycopg.OperationalError as exc:
            if "does not exist" in str(exc):
                gone.append(name)
    if gone:
        forget(home, project, {found[name] for name in gone})
    return {name: url for name, url in found.items() if name not in gone}


def forget(home: Path, project: str, urls: set[str]) -> None:
    file = path(home, project)
    with FileLock(str(file) + ".lock", timeout=10):
        known = {k: v for k, v in read(home, project).items() if v not in urls}
        tmp = file.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(known, out, indent=1, sort_keys=True)
        os.replace(tmp, file)


def for_commands(
    home: Path | None, project: str, taken: Mapping[str, str], timeout: int
) -> dict[str, str]:
    """The project's Django test databases for ``shoal sweep`` and ``shoal ps`` to look
    at too, beside the configured databases ``taken`` (name → URL), none of them twice."""
    from shoal.embedded import default_home

    urls = set(taken.values())
    found = reachable(home or default_home(), project, set(taken), timeout)
    return {name: url for name, url in found.items() if url not in urls}
