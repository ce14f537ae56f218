"""``shoal ps``: every shoal namespace on the configured servers, live or dead."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from shoal.cli.render import absent_note, duration
from shoal.cli.render import console as render_console
from shoal.cli.settings import cli_settings, home_option
from shoal.integrations.django import known as django_known
from shoal.pg.ps import NamespaceStatus, PsResult, ps
from shoal.targets import existing_urls

_STYLE = {"live": "green", "dead": "red", "unknown": "yellow"}


def owners(status: NamespaceStatus) -> str:
    """``host pid 1, 2`` grouped by host; ``?`` when no schema says who made it."""
    by_host: dict[str, list[str]] = {}
    for host, pid in status.owners:
        by_host.setdefault(host or "?", []).append("?" if pid is None else str(pid))
    return "; ".join(f"{host} pid {', '.join(pids)}" for host, pids in by_host.items()) or "?"


def to_drop(status: NamespaceStatus) -> str:
    """``N to drop``: schemas its workers renamed for the reaper; ``-`` when none."""
    return f"{status.to_drop} to drop" if status.to_drop else "-"


def render(result: PsResult, console: Console) -> None:
    for cluster in result.clusters:
        if not cluster.reachable:
            console.print(Text(f"unreachable: {cluster.error}", style="red"))
    down = {c.cluster for c in result.clusters if not c.reachable}
    for database in result.databases:
        if database.error and database.cluster not in down:
            console.print(Text(f"database {database.name}: {database.error}", style="red"))
    if down:
        console.print(
            "Liveness unknown for runs not seen alive: a run may hold its lease on a server "
            "that did not answer."
        )
    render_pool(result, console)
    if not result.namespaces:
        console.print("No shoal namespaces found.")
        return
    table = Table(
        "Namespace", "Status", "Age", "Owner", "Workers", "Databases", "Lease held by", "To drop"
    )
    table.columns[0].no_wrap = True
    for status in result.namespaces:
        table.add_row(
            Text(status.namespace),
            Text(status.status, style=_STYLE[status.status]),
            Text(duration(status.age_s(result.checked_at))),
            Text(owners(status)),
            Text(", ".join(status.workers) or "-"),
            Text(", ".join(status.databases) or "-"),
            Text(", ".join(status.lease_holders) or "-"),
            Text(to_drop(status)),
        )
    console.print(table)


def render_pool(result: PsResult, console: Console) -> None:
    """The warm pool, per database and setup fingerprint (nothing when it is empty)."""
    if not result.pool:
        return
    table = Table("Pool database", "Fingerprint", "Ready", "Building", "Dropping")
    for count in result.pool:
        table.add_row(
            Text(count.database),
            Text(count.fingerprint),
            str(count.ready),
            str(count.building),
            str(count.dropping),
        )
    console.print(table)


@click.command("ps")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@home_option
def ps_command(as_json: bool) -> None:
    """List every shoal namespace on the configured servers: live or dead, age, owner,
    workers, databases and lease holders.

    Exit status 1 when a server or database could not be read, 0 otherwise.
    """
    settings = cli_settings()
    existing = existing_urls(settings)
    urls = existing.urls
    urls = {
        **urls,
        **django_known.for_commands(
            settings.home, settings.project, urls, settings.connect_timeout
        ),
    }
    result = ps(urls, settings.connect_timeout, datetime.now(UTC))
    if as_json:
        click.echo(json.dumps({**result.as_json(), "not_looked_at": existing.absent}, indent=2))
    else:
        console = render_console()
        note = absent_note(existing)
        if note:
            console.print(note)
        render(result, console)
    raise SystemExit(0 if result.complete else 1)
