"""The run timeline: a self-contained HTML page of where a run's time went.

``render`` builds the page from one report or several (merged on one time axis);
``write`` puts it in a file. ``shoal report --html`` is the command line for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from shoal.errors import ShoalError
from shoal.report import ReportError, RunReport, list_reports, read_report
from shoal.timeline.page import render

__all__ = ["TimelineError", "gather", "render", "write"]


class TimelineError(ShoalError):
    """A path given for the timeline is wrong: a report that is not there, or an output
    that cannot be written. The message names the path and what was expected."""

    exit_code: ClassVar[int] = 2  # the user's input, like a usage error


def write(runs: Sequence[RunReport], out: Path) -> Path:
    """Render ``runs`` into ``out`` (its directory must exist); return ``out``."""
    text = render(runs)
    if out.is_dir():
        raise TimelineError(
            f"cannot write the timeline to {out}: it is a directory, expected a file path"
        )
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise TimelineError(
            f"cannot write the timeline to {out}: {exc.strerror or exc} "
            "(expected a writable file path)"
        ) from None
    return out


def gather(paths: Sequence[Path]) -> tuple[list[RunReport], list[str]]:
    """The reports named by ``paths`` (files, or directories of reports), and why any
    file found in a directory was left out.

    A file named directly must be a report; a directory must hold at least one. Either
    mistake raises :class:`TimelineError` naming the path and what was expected.
    """
    runs: list[RunReport] = []
    skipped: list[str] = []
    for path in paths:
        if path.is_dir():
            entries = list_reports(path)
            if not entries:
                raise TimelineError(f"no run reports in {path} (expected *_<namespace>.json files)")
            for entry in entries:
                try:
                    runs.append(read_report(entry.path))
                except ReportError as exc:
                    skipped.append(str(exc))
        elif path.exists():
            try:
                runs.append(read_report(path))
            except ReportError as exc:
                raise TimelineError(str(exc)) from None
        else:
            raise TimelineError(
                f"{path}: no such file or directory, expected a run report or a directory of them"
            )
    # The same report reached twice (a file and its directory) is one run.
    unique = {(run.namespace, run.started): run for run in runs}
    runs = list(unique.values())
    if not runs:
        raise TimelineError(f"no readable run report in {', '.join(str(p) for p in paths)}")
    return runs, skipped
