"""``shoal locks``: who is blocked by whom, in terms of runs and workers, and lock pressure."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from shoal.cli.render import absent_note, duration
from shoal.cli.render import console as render_console
from shoal.cli.settings import cli_settings, home_option
from shoal.pg.locks import Blocked, ClusterLocks, Session, probe_all, roots
from shoal.targets import existing_urls


def who(session: Session) -> str:
    """``run <namespace>, worker gw1`` for a labelled session; what is known otherwise."""
    if session.prepared_transaction:
        return "a prepared transaction"
    if not session.exists:
        return f"pid {session.pid} (ended meanwhile)"
    if session.labelled:
        role = f" ({session.role})" if session.role else ""
        return f"run {session.run}, worker {session.worker or '?'}{role}"
    name = session.application_name or "no application_name"
    return f"unlabelled session pid {session.pid} ({name}, user {session.user or '?'})"


def wait(entry: Blocked) -> str:
    return "/".join(p for p in (entry.wait_event_type, entry.wait_event) if p) or "?"


def summary(entry: Blocked) -> str:
    """The one line a person needs: who waits for whom, on what, how long, doing what."""
    blockers = " and ".join(who(b) for b in entry.blocked_by)
    line = f"{who(entry.waiting)} is blocked by {blockers} ({wait(entry)}, "
    line += f"{duration(entry.waited_s)})"
    return line + (f": {entry.waiting.query}" if entry.waiting.query else "")


def locks_json(clusters: list[ClusterLocks]) -> dict[str, Any]:
    blocked = [entry for cluster in clusters for entry in cluster.blocked]
    return {
        "clusters": [_cluster_json(c) for c in clusters],
        "blocked": [{**entry.as_json(), "summary": summary(entry)} for entry in blocked],
        "root_blockers": [{"cluster": cluster, **s.as_json()} for cluster, s in roots(blocked)],
    }


def _cluster_json(cluster: ClusterLocks) -> dict[str, Any]:
    pressure = cluster.pressure
    return {
        "cluster": cluster.cluster,
        "url": cluster.url,
        "reachable": cluster.reachable,
        "error": cluster.error,
        "lock_table": None if pressure is None else pressure.as_json(),
        "blocked": len(cluster.blocked),
    }


def render(clusters: list[ClusterLocks], console: Console) -> None:
    for cluster in clusters:
        if not cluster.reachable:
            console.print(Text(f"cannot read {cluster.url}: {cluster.error}", style="red"))
    blocked = [entry for cluster in clusters for entry in cluster.blocked]
    if blocked:
        table = Table("Blocked", "Blocked by", "Wait", "Waited", "Query", title="Blocked sessions")
        for entry in blocked:
            table.add_row(
                Text(who(entry.waiting)),
                Text("\n".join(_blocker(b) for b in entry.blocked_by)),
                Text(wait(entry)),
                Text(duration(entry.waited_s)),
                Text(entry.waiting.query),
            )
        console.print(table)
        for _, root in roots(blocked):
            console.print(Text(f"Holding the others up: {_blocker(root)}: {root.query or '?'}"))
    elif any(c.reachable for c in clusters):
        answered = all(c.reachable for c in clusters)
        console.print("Nothing is blocked." if answered else "Nothing is blocked where asked.")
    pressure = Table("Server", "Locks held", "Capacity", "Used", title="Lock table")
    for cluster in clusters:
        if cluster.pressure is not None:
            p = cluster.pressure
            used = f"{p.percent:.1f} %"
            pressure.add_row(Text(cluster.cluster), str(p.held), str(p.capacity), used)
    if pressure.row_count:
        console.print(pressure)


def _blocker(session: Session) -> str:
    # A blocker that is "idle in transaction" holds its locks while doing nothing: say so.
    details = [f"pid {session.pid}"] if session.labelled else []
    details += [session.state] if session.state and session.state != "active" else []
    return who(session) + (f" [{', '.join(details)}]" if details else "")


@click.command("locks")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@home_option
def locks_command(as_json: bool) -> None:
    """Show blocked sessions and who blocks them, as runs and workers, on every configured
    server, and how full each server's lock table is.

    Exit status 1 when a server could not be asked, 0 otherwise.
    """
    settings = cli_settings()
    existing = existing_urls(settings)
    clusters = probe_all(list(existing.urls.values()), settings.connect_timeout)
    if as_json:
        click.echo(json.dumps({**locks_json(clusters), "not_looked_at": existing.absent}, indent=2))
    else:
        console = render_console()
        note = absent_note(existing)
        if note:
            console.print(note)
        render(clusters, console)
    raise SystemExit(0 if all(c.reachable for c in clusters) else 1)
