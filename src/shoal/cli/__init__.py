"""The ``shoal`` command line. One error boundary: user mistakes print ``Error: …`` and
exit 2 without a traceback (``-v`` shows it)."""

from __future__ import annotations

import sys
from typing import Any

import click

from shoal.cli.db import db
from shoal.cli.demo import demo_command
from shoal.cli.locks import locks_command
from shoal.cli.ps import ps_command
from shoal.cli.report import report_command
from shoal.cli.serve import serve_command
from shoal.cli.run import run_command
from shoal.cli.sweep import sweep_command
from shoal.errors import ShoalError


class _Boundary(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ShoalError as exc:
            if ctx.params.get("verbose"):
                raise
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=_Boundary)
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(package_name="shoal")
def cli(verbose: bool) -> None:
    """Parallel pytest runs on shared PostgreSQL, without collisions."""


cli.add_command(db)
cli.add_command(demo_command)
cli.add_command(locks_command)
cli.add_command(ps_command)
cli.add_command(report_command)
cli.add_command(serve_command)
cli.add_command(run_command)
cli.add_command(sweep_command)


def main() -> None:
    cli(prog_name="shoal", args=sys.argv[1:])
