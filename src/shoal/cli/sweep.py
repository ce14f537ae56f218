"""``shoal sweep``: drop the schemas of runs that are provably dead."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from shoal.cli.render import absent_note
from shoal.cli.render import console as render_console
from shoal.cli.settings import cli_settings, home_option
from shoal.integrations.django import commands as django_commands
from shoal.integrations.django import known as django_known
from shoal.pg.sweep import DEFAULT_GRACE_S, SweepResult, sweep
from shoal.targets import current_fingerprints, existing_urls
from shoal.targets import urls as configured_urls
from shoal.words import plural


def summary_line(result: SweepResult) -> str:
    """One line for the sweep `shoal run` does alongside the run."""
    if not result.detection_complete:
        down = ", ".join(c.url for c in result.clusters if not c.reachable)
        return f"sweep: dropped nothing, cannot tell which runs are alive ({down} unreachable)"
    dropped = sum(len(o.dropped) for o in result.databases.values())
    failed = sum(len(o.failed) for o in result.databases.values())
    live = len(result.live)
    postponed = sum(
        s["reason"] == "time_budget" for o in result.databases.values() for s in o.skipped
    )
    text = f"sweep: dropped {plural(dropped, 'stale schema')}, {plural(live, 'live run')} untouched"
    if failed:
        text += f", {plural(failed, 'drop')} failed (shoal sweep for details)"
    if postponed:
        text += f", {postponed} left for lack of time (run shoal sweep)"
    return text


def render(result: SweepResult, console: Console) -> None:
    for cluster in result.clusters:
        if not cluster.reachable:
            console.print(f"[red]unreachable[/red] {cluster.url}: {cluster.error}")
    if not result.detection_complete:
        console.print(
            "Dropped nothing: a run may hold its lease on an unreachable server "
            "(active_detection_incomplete)."
        )
    table = Table(
        "database", "dropped" if not result.dry_run else "would drop", "failed", "skipped"
    )
    for name, outcome in result.databases.items():
        reasons: dict[str, int] = {}
        for skipped in outcome.skipped:
            reasons[skipped["reason"]] = reasons.get(skipped["reason"], 0) + 1
        table.add_row(
            name,
            str(len(outcome.dropped)),
            str(len(outcome.failed)),
            ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) or "0",
        )
    console.print(table)
    for name, outcome in result.databases.items():
        for failure in outcome.failed:
            console.print(f"[yellow]failed[/yellow] {name}.{failure['schema']}: {failure['error']}")


@click.command("sweep")
@click.option("--dry-run", is_flag=True, help="Say what would be dropped; drop nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=DEFAULT_GRACE_S,
    show_default=True,
    metavar="SECONDS",
    help="Leave schemas younger than this alone.",
)
@home_option
def sweep_command(dry_run: bool, as_json: bool, grace: float) -> None:
    """Drop schemas of dead runs, fail-closed, and pool schemas and template databases of
    setups no longer current.

    Exit status 0 when everything that should have been dropped was, 1 otherwise.
    """
    settings = cli_settings()
    # A dry run only looks: it does not start the embedded server to find nothing there.
    existing = existing_urls(settings) if dry_run else None
    urls = existing.urls if existing is not None else configured_urls(settings)
    # Django's test databases, which a project without [tool.shoal] names nowhere else.
    urls = {
        **urls,
        **django_known.for_commands(
            settings.home, settings.project, urls, settings.connect_timeout
        ),
    }
    result = sweep(
        urls,
        grace_s=grace,
        dry_run=dry_run,
        timeout=settings.connect_timeout,
        fingerprints=current_fingerprints(settings),
        ddl_slots=settings.ddl_slots,
        project=settings.project,
        foreign_after_s=settings.pool_foreign_days * 86400,
        templates=django_commands.template_fingerprints(settings),
    )
    absent = existing.absent if existing is not None else ()
    if as_json:
        click.echo(json.dumps({**result.as_json(), "not_looked_at": absent}, indent=2))
    else:
        console = render_console()
        note = absent_note(existing) if existing is not None else None
        if note:
            console.print(note)
        render(result, console)
    raise SystemExit(0 if result.ok else 1)
