"""``shoal db``: the embedded PostgreSQL server every run shares by default."""

from __future__ import annotations

import json
from pathlib import Path

import click

from shoal import naming
from shoal.cli.settings import cli_settings
from shoal.embedded import EmbeddedServer
from shoal.errors import UsageError

_home_option = click.option(
    "--home",
    type=click.Path(path_type=Path),
    default=None,
    help="Data directory of the server (default: SHOAL_HOME, then the user data directory).",
)


def _server(home: Path | None) -> EmbeddedServer:
    return EmbeddedServer(cli_settings(home=home).home)


@click.group()
def db() -> None:
    """Manage the embedded PostgreSQL server."""


@db.command()
@_home_option
def up(home: Path | None) -> None:
    """Start the server (or find it running) and print its URL."""
    server = _server(home)
    click.echo(server.ensure_running())


@db.command()
@_home_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(home: Path | None, as_json: bool) -> None:
    """Say whether the server runs, where, and how to reach it."""
    state = _server(home).status()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "home": str(state.home),
                    "initialised": state.initialised,
                    "running": state.running,
                    "pid": state.pid,
                    "url": state.url,
                }
            )
        )
        return
    click.echo(f"home:    {state.home}")
    click.echo(f"running: {'yes, pid ' + str(state.pid) if state.running else 'no'}")
    if state.url:
        click.echo(f"url:     {state.url}")


@db.command()
@_home_option
@click.argument("database", default="postgres")
def url(home: Path | None, database: str) -> None:
    """Print the URL of DATABASE on the server (starting it and creating DATABASE if needed)."""
    why = naming.database_key_problem(database)
    if why:
        raise UsageError("DATABASE", database, "command line", why)
    server = _server(home)
    server.ensure_running()
    if database != "postgres":
        server.ensure_database(database)
    click.echo(server.url(database))


@db.command()
@_home_option
def down(home: Path | None) -> None:
    """Stop the server. Runs in progress lose their connections."""
    stopped = _server(home).stop()
    click.echo("stopped" if stopped else "not running")
