"""The command line's one error boundary.

shoal's own errors print ``Error: …`` and exit with the error's code (2 for the user's
input, 1 for the world); a server's error (psycopg) prints the same way with its
password masked. No traceback, unless ``shoal -v`` asks for one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from shoal.errors import ShoalError, first_line


@contextmanager
def errors_reported(*, verbose: bool) -> Iterator[None]:
    try:
        yield
    except ShoalError as exc:
        if verbose:
            raise
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(exc.exit_code) from None
    except Exception as exc:
        # psycopg is not imported by every command; recognise its errors by module.
        if verbose or not type(exc).__module__.startswith("psycopg"):
            raise
        click.echo(f"Error: PostgreSQL said: {first_line(exc)}", err=True)
        raise SystemExit(1) from None
