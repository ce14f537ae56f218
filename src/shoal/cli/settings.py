"""Settings for a CLI invocation: the nearest pyproject.toml, the environment, the flags.

Every command takes ``--home DIR`` (the embedded server's data directory), before or
after its name: ``shoal --home DIR ps`` and ``shoal ps --home DIR`` are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from shoal.given import find_project_file

if TYPE_CHECKING:
    from shoal.config import Settings

F = TypeVar("F", bound=Callable[..., Any])
_HOME = "shoal_home"


def _remember_home(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        ctx.meta[_HOME] = value  # meta is shared by every context of the invocation


def home_option(command: F) -> F:
    """``--home DIR`` for a command; :func:`cli_settings` picks it up."""
    option = click.option(
        "--home",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        expose_value=False,
        callback=_remember_home,
        metavar="DIR",
        help="The embedded server's data directory (default: SHOAL_HOME, then the user "
        "data directory).",
    )
    return option(command)


def chosen_home() -> Path | None:
    """The ``--home`` given to this invocation, if any."""
    context = click.get_current_context(silent=True)
    home = context.meta.get(_HOME) if context is not None else None
    return home if isinstance(home, Path) else None


def cli_settings(**flags: Any) -> Settings:
    # Imported here: `shoal run` in a project that gives shoal nothing never loads the
    # settings' models on its way to pytest.
    from shoal.config import load_settings

    if flags.get("home") is None and chosen_home() is not None:
        flags["home"] = chosen_home()
    return load_settings(flags=flags, pyproject=find_project_file(None, Path.cwd()))
