"""``<prefix>:<path>`` specs: a file of the project, relative to its root."""

from __future__ import annotations

from pathlib import Path

from shoal.setups.kind import SpecProblem


def project_file(spec: str, prefix: str, root: Path) -> Path | None:
    """The file ``prefix:<path>`` names; None when ``spec`` has another prefix."""
    kind, sep, rest = spec.partition(":")
    if kind != prefix or not sep or not rest:
        return None
    path = Path(rest) if Path(rest).is_absolute() else root / rest
    try:
        found = path.is_file()
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise SpecProblem(f"{rest[:80]!r}… cannot be a file: {exc.strerror}") from None
    if not found:
        raise SpecProblem(f"{path} does not exist")
    return path
