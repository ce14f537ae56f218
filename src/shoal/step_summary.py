"""A short Markdown summary of a run, for CI job pages (GitHub's ``GITHUB_STEP_SUMMARY``).

Pure rendering plus one append. Every string from the report goes into a code span
(or is escaped) so a node id holding ``|``, backticks or HTML cannot break the table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from shoal.report import ReportError, RunReport, read_report

STEP_SUMMARY_ENV: Final = "GITHUB_STEP_SUMMARY"
SLOWEST: Final = 5
FAILURES: Final = 10
_BACKTICKS = re.compile(r"`+")


def code(text: str, in_table: bool = False) -> str:
    """``text`` as an inline code span that survives any content.

    In a table cell a ``|`` ends the cell even inside a code span unless escaped (GFM);
    elsewhere the escape would show, so it is added only there.
    """
    flat = " ".join(text.splitlines())
    if in_table:
        flat = flat.replace("|", "\\|")
    longest = max((len(m) for m in _BACKTICKS.findall(flat)), default=0)
    fence = "`" * (longest + 1)
    # A span that starts or ends with a backtick needs a space inside its fence.
    pad = " " if flat.startswith("`") or flat.endswith("`") or not flat.strip() else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def markdown(report: RunReport, slowest: int = SLOWEST) -> str:
    """The summary: outcomes, D and its parts, failures, slowest tests, what was left."""
    counts = report.outcome_counts()
    outcomes = ", ".join(f"{n} {outcome}" for outcome, n in counts.items()) or "no tests"
    icon = "✅" if report.exit_status == 0 else "❌"
    workers = report.worker_count if report.worker_count is not None else len(report.workers)
    lines = [
        f"### {icon} shoal: {outcomes} in {report.duration_s:.1f}s (exit {report.exit_status})",
        "",
        f"Namespace {code(report.namespace)}, {workers} worker{'s' if workers != 1 else ''}.",
    ]
    distance = report.distance
    if distance is not None:
        lines += [
            "",
            f"**D = {distance.d:.2f}**: wall {distance.wall_s:.2f}s against a bound of "
            f"{distance.bound_s:.2f}s; excess {distance.excess_s:.2f}s = start-up "
            f"{distance.startup_s:.2f}s + idle {distance.idle_s:.2f}s + imbalance "
            f"{distance.imbalance_s:.2f}s + teardown {distance.teardown_s:.2f}s "
            f"(tail {distance.tail_s:.2f}s).",
        ]
    failures = [t for t in report.tests if t.outcome in ("failed", "error")]
    if failures:
        lines += ["", f"**Failed** ({len(failures)})", ""]
        lines += [f"- {code(t.nodeid)} ({t.outcome}, {t.worker})" for t in failures[:FAILURES]]
        if len(failures) > FAILURES:
            lines.append(f"- … and {len(failures) - FAILURES} more")
    ranked = report.slowest(slowest)
    if ranked:
        lines += ["", "| slowest tests | outcome | worker | total |", "|---|---|---|--:|"]
        lines += [
            f"| {code(t.nodeid, True)} | {t.outcome} | {code(t.worker, True)} | {t.total_s:.2f}s |"
            for t in ranked
        ]
    if report.kept or report.problems:
        lines += ["", "**Left behind**", ""]
        lines += [f"- kept: {code(line)}" for line in report.kept]
        lines += [f"- {code(line)}" for line in report.problems]
    return "\n".join(lines) + "\n"


def append_step_summary(report: RunReport | Path, environ: Mapping[str, str]) -> Path | None:
    """Append the summary of ``report`` (a model, or the path of a report file) to the file
    ``environ["GITHUB_STEP_SUMMARY"]`` names; return that path.

    Does nothing and returns None when the variable is unset or empty (not on GitHub
    Actions). Raises :class:`~shoal.report.ReportError`, naming the path, when the report
    cannot be read or the summary file cannot be written: a caller that must not fail
    the run because of it catches that and warns.
    """
    target = environ.get(STEP_SUMMARY_ENV)
    if not target:
        return None
    run = report if isinstance(report, RunReport) else read_report(report)
    path = Path(target)
    try:
        with path.open("a+b") as fh:
            # A blank line before ours: earlier steps may have left the file mid-line.
            separator = b""
            if fh.tell() > 0:
                fh.seek(-1, 2)
                separator = b"\n" if fh.read(1) == b"\n" else b"\n\n"
            fh.write(separator + markdown(run).encode("utf-8"))
    except OSError as exc:
        raise ReportError(
            f"cannot append the run summary to {path} ({STEP_SUMMARY_ENV}): "
            f"{exc.strerror or exc}; expected a writable file path"
        ) from None
    return path
