"""The ``shoal`` command line. One error boundary: user mistakes print ``Error: …`` and
exit 2 without a traceback (``-v`` shows it)."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from shoal.cli.settings import home_option

# Subcommands are imported only when invoked: `shoal run` starts pytest, and every
# import it does not need is time added to every run.
_COMMANDS = {
    "db": "shoal.cli.db:db",
    "demo": "shoal.cli.demo:demo_command",
    "locks": "shoal.cli.locks:locks_command",
    "pool": "shoal.cli.pool:pool_group",
    "ps": "shoal.cli.ps:ps_command",
    "report": "shoal.cli.report:report_command",
    "run": "shoal.cli.run:run_command",
    "serve": "shoal.cli.serve:serve_command",
    "sweep": "shoal.cli.sweep:sweep_command",
}


class _Shoal(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        from shoal.cli.boundary import errors_reported

        with errors_reported(verbose=bool(ctx.params.get("verbose"))):
            return super().invoke(ctx)


@click.group(cls=_Shoal)
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks for errors.")
@home_option
@click.version_option(package_name="shoal")
def cli(verbose: bool) -> None:
    """Parallel pytest runs on shared PostgreSQL, without collisions."""


def main() -> None:
    cli(prog_name="shoal", args=sys.argv[1:])
