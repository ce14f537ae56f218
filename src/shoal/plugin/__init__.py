"""The pytest plugin (entry point ``shoal``): one namespace per invocation, one schema per
worker in every configured database, exported so that unmodified code lands in it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import pytest

from shoal.errors import ShoalError
from shoal.plugin.state import CONFIGURED_KEY, INI_KEYS, STATE, RunState

if TYPE_CHECKING:
    # Imported where used: an xdist worker of a run that touches no database should not
    # pay for psycopg and the PostgreSQL layer at start-up, which delays every test.
    from shoal.pg.worker import DatabaseHandle, Timing

__all__ = ["shoal_databases", "shoal_namespace", "shoal_schema"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("shoal", "shoal: isolated PostgreSQL schemas per run and worker")
    group.addoption(
        "--shoal-keep-on-failure", action="store_true", default=None,
        help="keep the worker schemas when the run fails, and print how to connect to them",
    )  # fmt: skip
    group.addoption(
        "--shoal-ddl-slots", default=None, metavar="N|auto",
        help="concurrent schema DDL allowed per server, across every run (default: auto)",
    )  # fmt: skip
    group.addoption(
        "--shoal-report", action="store_true", default=False,
        help="write a run report (tests, workers, provisioning) into the reports directory",
    )  # fmt: skip
    group.addoption(
        "--shoal-order", choices=("duration", "none"), default="duration",
        help="with xdist worksteal/load: run the longest tests first, by past reports' "
        "durations, dealt evenly across workers (default: duration)",
    )  # fmt: skip
    for key in INI_KEYS:
        parser.addini(f"shoal_{key}", help=f"shoal setting {key} (see [tool.shoal])", default=None)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    try:
        state = RunState.from_config(config)
        config.stash[STATE] = state
        # Fail before any test runs, and before anything is created, on a database that
        # cannot be reached, a setup hook that cannot be imported, or a search-path tail
        # that holds tables. A process that runs tests also exports its environment now.
        if state.configured and state.is_controller:
            state.worker_schemas().check()
        elif state.configured:
            state.prepare()
    except ShoalError as exc:
        raise pytest.UsageError(f"shoal: {exc}") from None
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(state), "shoal-xdist")
        from shoal.plugin.order import register as register_order

        register_order(config, state)
    # Only the process that sees every test writes the report: not an xdist worker.
    if config.getoption("shoal_report") and not hasattr(config, "workerinput"):
        from shoal.plugin.report import ReportCollector

        config.pluginmanager.register(ReportCollector(state, config), "shoal-report")


class _XdistHooks:
    def __init__(self, state: RunState) -> None:
        self.state = state

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        # Every worker of this invocation shares the controller's namespace.
        node.workerinput["shoal_namespace"] = self.state.namespace.token
        node.workerinput[CONFIGURED_KEY] = self.state.configured

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        output = getattr(node, "workeroutput", {})
        self.state.kept.extend(output.get("shoal_kept", []))
        self.state.problems.extend(output.get("shoal_problems", []))
        if output.get("shoal_timings"):
            from shoal.pg.worker import Timing

            timings = [Timing(**t) for t in output["shoal_timings"]]
            self.state.worker_timings.setdefault(str(node.gateway.id), []).extend(timings)


def pytest_report_header(config: pytest.Config) -> str | None:
    state = config.stash.get(STATE, None)
    return None if state is None else f"shoal: namespace {state.namespace.describe()}"


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is not None:
        state.restore_environment()
        if state.configured and not hasattr(config, "workerinput"):
            from shoal.plugin.refill import maybe_refill

            maybe_refill(config)  # the warm pool, refilled in the background after the run


@pytest.fixture(scope="session")
def _shoal_worker(request: pytest.FixtureRequest) -> Iterator[RunState]:
    state = request.config.stash[STATE]
    try:
        # Already done at configure time when the project configures shoal; the
        # environment is exported before the setup hooks run, so they see it too.
        schemas = state.prepare()
        state.handles = schemas.provision()
    except ShoalError as exc:
        pytest.fail(f"shoal: {exc}", pytrace=False)
    state.timings = schemas.timings
    try:
        yield state
    finally:
        keep = state.settings.keep_on_failure and request.session.testsfailed > 0
        state.problems += schemas.teardown(keep=keep)
        if keep:
            state.kept += [
                f"{h.name}: schema {h.schema} — psql {_quote(_masked(h.url))}"
                for h in state.handles.values()
            ]
        workeroutput = getattr(request.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput["shoal_kept"] = state.kept
            workeroutput["shoal_problems"] = state.problems
            workeroutput["shoal_timings"] = [asdict(t) for t in state.timings]


def provisioning_summary(namespace: str, timings: list[Timing]) -> str:
    total = [t.total_s for t in timings]
    slowest = max(timings, key=lambda t: t.total_s)
    return (
        f"shoal: namespace {namespace}: {len(timings)} schemas provisioned, "
        f"slowest {slowest.total_s:.2f}s ({slowest.database}: setup {slowest.setup_s:.2f}s, "
        f"slot wait {slowest.slot_wait_s:.2f}s), total {sum(total):.2f}s"
    )


def _masked(url: str) -> str:
    from shoal.conninfo import mask

    return mask(url)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


@pytest.fixture(scope="session", autouse=True)
def _shoal_autouse(request: pytest.FixtureRequest) -> None:
    state = request.config.stash.get(STATE, None)
    if state is not None and state.configured:
        request.getfixturevalue("_shoal_worker")


@pytest.fixture(scope="session")
def shoal_namespace(request: pytest.FixtureRequest) -> str:
    """This invocation's namespace token (the same in every xdist worker)."""
    return request.config.stash[STATE].namespace.token


@pytest.fixture(scope="session")
def shoal_schema(_shoal_worker: RunState) -> str:
    """This worker's schema name: ``test_<namespace>_<worker>``, the same in every database."""
    assert _shoal_worker.schemas is not None
    return _shoal_worker.schemas.schema


@pytest.fixture(scope="session")
def shoal_databases(_shoal_worker: RunState) -> dict[str, DatabaseHandle]:
    """Configured database name → handle (schema, bound URL, ``connect()``, SQLAlchemy helpers)."""
    return dict(_shoal_worker.handles)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is None:
        return
    timings = [t for ts in state.timings_by_worker().values() for t in ts]
    if timings:
        terminalreporter.write_line(provisioning_summary(state.namespace.token, timings))
    if state.kept:
        terminalreporter.section("shoal: schemas kept for inspection")
        for line in state.kept:
            terminalreporter.write_line(line)
    for problem in state.problems:
        terminalreporter.write_line(f"shoal: {problem}", yellow=True)
