"""``shoal run``: a fresh namespace, pytest with xdist and a report; dead runs swept alongside."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from shoal.cli.settings import chosen_home, cli_settings, home_option
from shoal.defaults import CONNECT_TIMEOUT_S
from shoal.errors import ShoalError, first_line
from shoal.namespace import Namespace, fresh

if TYPE_CHECKING:
    from shoal.config import Settings

SWEEP_BUDGET_S = 10.0
_XDIST_CHOICES = ("-n", "--numprocesses", "--dist", "-d", "--tx")


def user_chose_xdist(args: Sequence[str]) -> bool:
    """True when the pytest arguments already say how (or whether) to use xdist."""
    for i, arg in enumerate(args):
        if arg in _XDIST_CHOICES or arg.startswith(("--numprocesses=", "--dist=")):
            return True
        if (arg.startswith("-n") and arg[2:].isdigit()) or arg == "-nauto":
            return True
        if arg == "-p" and i + 1 < len(args) and args[i + 1] == "no:xdist":
            return True
        if arg == "-pno:xdist":
            return True
    return False


def pytest_argv(args: Sequence[str]) -> list[str]:
    """pytest's arguments: xdist defaults unless the user chose, a report, then theirs."""
    defaults = [] if user_chose_xdist(args) else ["-n", "auto", "--dist", "worksteal"]
    return [*defaults, "--shoal-report", *args]


@click.command(
    "run",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("--no-sweep", is_flag=True, help="Do not sweep dead runs alongside this one.")
@click.option(
    "--shard",
    metavar="I/N",
    default=None,
    help="Run shard I of N, split by past durations (default: $SHOAL_SHARD).",
)
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
@home_option
def run_command(no_sweep: bool, shard: str | None, pytest_args: tuple[str, ...]) -> None:
    """Run pytest in a fresh namespace: `shoal run [--no-sweep] [--] [PYTEST_ARGS]...`.

    Uses `-n auto --dist worksteal` unless the arguments choose otherwise, and writes
    a run report. Exits with pytest's exit status.
    """
    # Validates SHOAL_NAMESPACE_FORCE (and everything else) before anything is created.
    # A project that gives shoal nothing has nothing to validate, and its run does not
    # load the settings' models (the sweep loads them, in its own thread).
    settings = None if _given_nothing() else cli_settings()
    shard_args = _shard_args(shard)
    # Always a fresh namespace: one exported by an earlier run in this shell is ignored.
    # It reaches the plugin in-process, not through the environment: a pytest that a
    # test starts must not inherit it.
    forced = settings.namespace_force if settings is not None else None
    namespace = Namespace(forced, "forced") if forced else Namespace(fresh().token, "runner")
    sweeping = None if no_sweep else _Sweep(settings)
    args = list(pytest_args)
    if args[:1] == ["--"]:
        args = args[1:]
    # In this process: a second interpreter would import everything again (measured
    # ~0.4 s on every run).
    import pytest

    from shoal.plugin import PlanCarrier

    carrier = PlanCarrier(namespace)
    plugins: list[object] = [carrier] if sweeping is None else [carrier, sweeping]
    try:
        status = int(pytest.main(pytest_argv([*shard_args, *args]), plugins=plugins))
    finally:
        if sweeping is not None:
            sweeping.report()
    if carrier.report is not None:
        _after(carrier.report)
    raise SystemExit(status)


def _given_nothing() -> bool:
    from shoal.given import find_project_file, nothing_given

    return nothing_given(
        flags={"home": chosen_home()},
        ini={},
        pyproject=find_project_file(None, Path.cwd()),
        environ=os.environ,
    )


class _Sweep:
    """The sweep of dead runs, alongside the run rather than before it.

    It only drops what dead runs left (fail-closed, see :mod:`shoal.pg.sweep`), nothing
    this run can have made yet, so it need not hold up the run's start: measured, the
    sweep before the run put +0.14 s on every start, and a sweep started with the run
    about 0.25 s more, competing with the workers' start for the same cores. So it starts once
    the first test has reported (a pytest hook: this object is one of the run's plugins),
    or at the end of a run that reported none. Its connections are shoal's own
    (:func:`shoal.pg.connect.admin_connect`), untouched by the binding the plugin exports
    meanwhile. Its summary is printed once the run is over.
    """

    def __init__(self, settings: Settings | None) -> None:
        self._settings = settings  # None: nothing was given; loaded in the sweep's thread
        self._line: str | None = None
        self._error: str | None = None
        self._thread = threading.Thread(target=self._run, name="shoal-sweep", daemon=True)
        self._started = False

    def pytest_runtest_logreport(self) -> None:
        self._start()

    def _start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def _run(self) -> None:
        from shoal.cli.sweep import summary_line
        from shoal.pg.sweep import sweep
        from shoal.targets import urls as configured_urls

        # The run goes on whatever happens here: the next sweep tries again. Any other
        # error than shoal's own is said in one line too, not as a thread's traceback in
        # the middle of the run's output.
        try:
            settings = self._settings or cli_settings()
            result = sweep(
                configured_urls(settings),
                timeout=settings.connect_timeout,
                budget_s=SWEEP_BUDGET_S,
                ddl_slots=settings.ddl_slots,
                project=settings.project,
                foreign_after_s=settings.pool_foreign_days * 86400,
            )
        except ShoalError as exc:
            self._error = first_line(exc)
            return
        except Exception as exc:
            self._error = f"{type(exc).__name__}: {first_line(exc)}"
            return
        self._line = summary_line(result)

    def report(self) -> None:
        """Wait for the sweep (within its budget) and say what it did."""
        self._start()
        timeout = self._settings.connect_timeout if self._settings else CONNECT_TIMEOUT_S
        self._thread.join(SWEEP_BUDGET_S + timeout)
        if self._error is not None:
            click.echo(f"shoal: sweep: not done: {self._error}", err=True)
        elif self._line is not None:
            click.echo(f"shoal: {self._line}", err=True)
        else:
            click.echo("shoal: sweep: stopped unfinished at the end of the run", err=True)


def _shard_args(shard: str | None) -> list[str]:
    """``--shoal-shard I/N`` for pytest, checked here so that a mistake is ``Error: …``."""
    from shoal.plugin.shard import OPTION, spec_from
    from shoal.shard import parse_spec

    spec = parse_spec(shard, "--shard", "the command line") if shard is not None else None
    spec = spec or spec_from(None, os.environ)
    return [] if spec is None else [OPTION, str(spec)]


def _after(report: Path) -> None:
    """On GitHub Actions, append the run's summary to the job's. (The plugin stamps the
    report's ``exited`` as the interpreter exits: no second rewrite of it here.)"""
    from shoal.report import ReportError
    from shoal.step_summary import append_step_summary

    try:
        append_step_summary(report, os.environ)  # reads the report only on GitHub Actions
    except ReportError as exc:
        # The run's outcome is pytest's exit status; a summary that cannot be written
        # only says so.
        click.echo(f"shoal: {exc}", err=True)
