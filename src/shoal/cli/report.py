"""``shoal report``: read the run reports that ``--shoal-report`` wrote and summarise them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from shoal.cli.settings import cli_settings
from shoal.report import (
    Outcome,
    ReportError,
    RunReport,
    Spread,
    latest_report,
    list_reports,
    read_report,
    startup_parts,
)

_STYLES: dict[Outcome, str] = {
    "passed": "green",
    "failed": "red",
    "error": "red",
    "skipped": "yellow",
    "xfailed": "yellow",
    "xpassed": "yellow",
}


@click.command("report")
@click.argument("paths", metavar="[PATH]...", nargs=-1, type=click.Path(path_type=Path))
@click.option("--latest", is_flag=True, help="The most recently started run (the default).")
@click.option("--all", "show_all", is_flag=True, help="One line per report in the directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the report(s) as JSON.")
@click.option(
    "--html",
    "as_html",
    is_flag=True,
    help="Write the run's timeline as one self-contained HTML file.",
)
@click.option(
    "--merge",
    is_flag=True,
    help="Every PATH (report files, or directories of them; default: the reports "
    "directory) as one run of a fleet of shards: outcomes, each shard's wall, the fleet's "
    "distance to the limit (the newest report of each shard is taken). With --html: side "
    "by side on one time axis.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="With --html: the file to write (- for stdout; a directory gets the default name). "
    "Default: next to the report, or timeline.html here with --merge.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where to look for reports (default: reports_dir from [tool.shoal]).",
)
def report_command(
    paths: tuple[Path, ...],
    latest: bool,
    show_all: bool,
    as_json: bool,
    as_html: bool,
    merge: bool,
    output: Path | None,
    directory: Path | None,
) -> None:
    """Summarise a run report: outcomes, distance to the limit, slowest tests, workers and
    provisioning; or draw its timeline (--html).

    PATH is a report file; without it, the latest report in the reports directory.
    """
    _refuse_combinations(paths, latest, show_all, as_json, as_html, merge, output)
    if merge:
        if not as_html:
            from shoal.cli.merge import show_merged

            show_merged(paths or (directory or _default_directory(),), as_json)
            return
        _write_merged(paths, directory, output)
        return
    directory = directory if directory is not None else _default_directory()
    if show_all:
        _show_all(directory, as_json)
        return
    path, run = _chosen(paths[0] if paths else None, directory, as_json, as_html)
    if as_html:
        _write_timeline([run], output, default=path.with_suffix(".html"))
    else:
        _show(run, as_json)


def _refuse_combinations(
    paths: tuple[Path, ...],
    latest: bool,
    show_all: bool,
    as_json: bool,
    as_html: bool,
    merge: bool,
    output: Path | None,
) -> None:
    if not as_html and output is not None:
        raise click.UsageError("-o/--output goes with --html")
    if as_html and (as_json or show_all):
        raise click.UsageError("--html does not go with --json or --all")
    if merge and (latest or show_all):
        raise click.UsageError("--merge reads every PATH given; --latest and --all pick")
    if not merge and len(paths) > 1:
        raise click.UsageError("give one PATH (or --html --merge for several)")
    if not merge and sum([bool(paths), latest, show_all]) > 1:
        raise click.UsageError("give at most one of PATH, --latest and --all")


def _chosen(
    path: Path | None, directory: Path, as_json: bool, as_html: bool
) -> tuple[Path, RunReport]:
    """The report PATH names, or the newest one in ``directory``."""
    if path is not None:
        return path, _read_path(path)
    newest = latest_report(directory)
    if newest is None:
        if as_html:
            from shoal.timeline import TimelineError

            raise TimelineError(
                f"no run reports in {directory} (expected *_<namespace>.json files)"
            )
        _no_reports(directory, as_json, "null")
    assert newest is not None
    try:
        return newest.path, read_report(newest.path)
    except ReportError as exc:
        raise click.ClickException(str(exc)) from None


def _write_merged(paths: tuple[Path, ...], directory: Path | None, output: Path | None) -> None:
    from shoal.timeline import gather

    if not paths:
        paths = (directory if directory is not None else _default_directory(),)
    runs, skipped = gather(paths)
    for problem in skipped:
        # One broken file among a directory of shards hides nothing else.
        click.echo(f"skipped: {problem}", err=True)
    _write_timeline(runs, output, default=Path("timeline.html"))


def _write_timeline(runs: list[RunReport], output: Path | None, default: Path) -> None:
    from shoal import timeline

    if output is not None and str(output) == "-":
        click.echo(timeline.render(runs), nl=False)
        return
    out = output if output is not None else default
    if out.is_dir():
        out = out / default.name
    written = timeline.write(runs, out)
    tests = sum(len(run.tests) for run in runs)
    runs_text = f"{len(runs)} runs, " if len(runs) > 1 else ""
    click.echo(f"timeline ({runs_text}{tests} tests) written to {written}")


def _default_directory() -> Path:
    settings = cli_settings()
    return settings.resolve_path(settings.reports_dir)


def _read_path(path: Path) -> RunReport:
    if not path.exists():
        raise click.BadParameter(f"{path}: no such file, expected a run report", param_hint="PATH")
    if path.is_dir():
        raise click.BadParameter(
            f"{path} is a directory, expected a run report file (or --html --merge {path})",
            param_hint="PATH",
        )
    try:
        return read_report(path)
    except ReportError as exc:
        raise click.BadParameter(str(exc), param_hint="PATH") from None


def _no_reports(directory: Path, as_json: bool, empty: str) -> NoReturn:
    # JSON consumers still get something that parses on stdout; people get the reason.
    if as_json:
        click.echo(empty)
    click.echo(
        f"No reports in {directory}: `shoal run` writes one for every run, "
        "`pytest --shoal-report` for a plain pytest run",
        err=as_json,
    )
    raise SystemExit(1)


def _show(run: RunReport, as_json: bool) -> None:
    if as_json:
        click.echo(run.model_dump_json(indent=2))
    else:
        render(Console(), run)


def _show_all(directory: Path, as_json: bool) -> None:
    runs: list[RunReport] = []
    for entry in list_reports(directory):
        try:
            runs.append(read_report(entry.path))
        except ReportError as exc:
            # One broken file (another tool's JSON, a truncated copy) hides nothing else.
            click.echo(f"skipped: {exc}", err=True)
    if not runs:
        _no_reports(directory, as_json, "[]")
        return
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in runs], indent=2))
        return
    console = Console()
    for run in runs:
        # One plain line per run, soft-wrapped: easy to grep, and no table squeezing the
        # namespace and the outcomes into columns on a narrow terminal.
        line = Text(f"{run.started:%Y-%m-%d %H:%M:%S}  {run.namespace}  ")
        line.append_text(_outcomes(run))
        line.append(f"  {run.duration_s:.1f}s  exit {run.exit_status}")
        if run.distance is not None:
            line.append(f"  D {run.distance.d:.2f}")
        console.print(line, soft_wrap=True)


def _outcomes(run: RunReport) -> Text:
    parts = [
        (f"{n} {outcome}{'s' if outcome == 'error' and n > 1 else ''}", _STYLES[outcome])
        for outcome, n in run.outcome_counts().items()
    ]
    text = Text(", ").join(Text(part, style=style) for part, style in parts)
    return text if parts else Text("no tests")


def render(console: Console, run: RunReport) -> None:
    """The human summary of one report."""
    console.print(
        f"[bold]{run.namespace}[/]  started {run.started:%Y-%m-%d %H:%M:%S} UTC  "
        f"took {run.duration_s:.1f}s  exit status {run.exit_status}",
        soft_wrap=True,
    )
    console.print(escape("pytest " + " ".join(run.args)), style="dim", soft_wrap=True)
    console.print(_outcomes(run))
    if run.distance is not None:
        for line in run.distance.summary():
            console.print(line, soft_wrap=True)
    tail = tail_line(run)
    if tail is not None:
        console.print(tail, soft_wrap=True)

    slowest = run.slowest(10)
    if slowest:
        table = Table(title=f"{len(slowest)} slowest tests", title_justify="left")
        table.add_column("test", overflow="fold")
        for column in ("outcome", "worker", "call", "setup+teardown"):
            table.add_column(column, justify="right" if column != "outcome" else "left")
        for test in slowest:
            table.add_row(
                Text(test.nodeid),
                Text(test.outcome, style=_STYLES[test.outcome]),
                test.worker,
                f"{test.duration_s:.2f}s",
                f"{test.setup_s + test.teardown_s:.2f}s",
            )
        console.print(table)

    if run.workers:
        table = Table(title="worker utilisation", title_justify="left")
        for column in ("worker", "tests", "busy", "idle", "busy %"):
            table.add_column(column, justify="left" if column == "worker" else "right")
        for usage in run.workers:
            table.add_row(
                usage.worker,
                str(usage.tests),
                f"{usage.busy_s:.2f}s",
                f"{usage.idle_s:.2f}s",
                f"{usage.utilisation:.0%}",
            )
        console.print(table)

    _startup(console, run)
    stats = run.provisioning_by_database()
    if stats:
        table = Table(
            title="provisioning per database (seconds, p50/max across workers)",
            title_justify="left",
        )
        for column in ("database", "schemas", "total", "slot wait", "create", "setup"):
            table.add_column(
                column, justify="left" if column == "database" else "right", no_wrap=True
            )
        for row in stats:
            table.add_row(
                row.database,
                str(row.schemas),
                _spread(row.total),
                _spread(row.slot_wait),
                _spread(row.create),
                _spread(row.setup),
            )
        console.print(table)


def tail_line(run: RunReport) -> str | None:
    """Where the time from the last test to the process exit went; None when unknown."""
    before, after = run.last_test_to_finished_s, run.after_finished_s
    if before is None and after is None:
        return None
    tail = run.tail
    parts = [f"last test → report {_seconds(before)}"]
    if tail is not None and tail.teardown_s is not None:
        parts[0] += f" (slowest schema teardown {_seconds(tail.teardown_s)})"
    parts.append(f"report → exit {_seconds(after)}")
    if tail is not None and after is not None:
        parts[-1] += (
            f" (summary {_seconds(tail.summary_s)}, reaper and refill start "
            f"{_seconds(tail.spawn_s)}, exit {_seconds(tail.exit_s)})"
        )
    total = None if before is None or after is None else before + after
    return f"tail: {_seconds(total)} from the last test to exit: " + "; ".join(parts)


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}s"


def _startup(console: Console, run: RunReport) -> None:
    """Each worker's start-up, split: what was the interpreter's, shoal's, collection's."""
    parts = startup_parts(run)
    if not parts:
        return
    columns = ("worker", "imports", "shoal", "collection", "other", "provisioning", "total")
    table = Table(title="start-up per worker (seconds, to its first test)", title_justify="left")
    for column in columns:
        table.add_column(column, justify="left" if column == "worker" else "right")
    for part in parts:
        figures = (part.imports_s, part.shoal_s, part.collection_s, part.other_s)
        table.add_row(
            part.worker,
            *(f"{value:.2f}" for value in (*figures, part.provisioning_s, part.total_s)),
        )
    console.print(table)


def _spread(spread: Spread) -> str:
    return f"{spread.p50:.2f}/{spread.max:.2f}"
