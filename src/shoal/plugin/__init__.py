"""The pytest plugin (entry point ``shoal``): one namespace per invocation, one schema per
worker in every configured database, exported so that unmodified code lands in it.

The process that owns the run (``shoal run``, or the pytest controller) builds the run
plan once; every xdist worker receives it (see :mod:`shoal.plan`). Each process that
runs tests exports its binding before any conftest is imported.
"""

from __future__ import annotations

import atexit
import gc
import os
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from shoal import naming
from shoal.plugin import startup
from shoal.plugin.boundary import shoal_errors_as_usage_errors
from shoal.plugin.state import INI_KEYS, STATE, RunState
from shoal.words import plural

if TYPE_CHECKING:
    from shoal.binding import DatabaseHandle
    from shoal.namespace import Namespace
    from shoal.pg.worker import Timing

__all__ = ["PlanCarrier", "shoal_databases", "shoal_namespace", "shoal_schema"]

# Runs that only look (help, versions, collection, fixture lists) start and create nothing.
_LOOKING = ("help", "version", "collectonly", "showfixtures", "show_fixtures_per_test", "markers")


class PlanCarrier:
    """What ``shoal run`` hands the plugin in-process, ``pytest.main(args,
    plugins=[PlanCarrier(namespace)])``: the namespace of the run it started. The plan is
    built with it from pytest's own configuration (its ini file, its flags)."""

    def __init__(self, namespace: Namespace) -> None:
        self.namespace = namespace
        self.report: Path | None = None  # the run report, once written


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("shoal", "shoal: isolated PostgreSQL schemas per run and worker")
    group.addoption(
        "--shoal-keep-on-failure",
        action="store_true",
        default=None,
        help="keep the worker schemas when the run fails, and print how to connect to them",
    )
    group.addoption(
        "--shoal-ddl-slots",
        default=None,
        metavar="N|auto",
        help="concurrent schema DDL allowed per server, across every run (default: auto)",
    )
    group.addoption(
        "--shoal-django-mode",
        default=None,
        metavar="schema|database",
        help="Django: a schema per worker in Django's test database (default), or a whole "
        "database per worker cloned from a migrated template (needs CREATEDB)",
    )
    group.addoption(
        "--shoal-report",
        action="store_true",
        default=False,
        help="write a run report (tests, workers, provisioning) into the reports directory",
    )
    group.addoption(
        "--shoal-order",
        choices=("duration", "none"),
        default="duration",
        help="with xdist worksteal/load: run the longest tests first, by past reports' "
        "durations, dealt evenly across workers (default: duration)",
    )
    from shoal.plugin.shard import addoptions as add_shard_options

    add_shard_options(group)
    for key in INI_KEYS:
        parser.addini(f"shoal_{key}", help=f"shoal setting {key} (see [tool.shoal])", default=None)


def _looking_only(config: pytest.Config) -> bool:
    options = config.known_args_namespace
    return any(getattr(options, name, None) for name in _LOOKING)


def _runs_workers(config: pytest.Config) -> bool:
    """This process is an xdist controller: its workers run the tests."""
    if not config.pluginmanager.hasplugin("xdist"):
        return False
    options = config.known_args_namespace
    return bool(getattr(options, "numprocesses", None) or getattr(options, "tx", None))


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Before any conftest is imported: plan the run, export this process's binding."""
    if STATE in early_config.stash or _looking_only(early_config):
        return
    with shoal_errors_as_usage_errors(), startup.shoal_clock(early_config):
        if os.environ.get("PYTEST_XDIST_WORKER") is not None:
            state = _inherited(early_config)  # None: wait for workerinput at configure
        else:
            state = _owner(early_config)
        if state is not None:
            early_config.stash[STATE] = state


def _inherited(config: pytest.Config) -> RunState | None:
    """An xdist worker's state from the plan its controller left in the environment.

    Only the controller's own workers take it (the plan names its owner; a worker's parent
    is its controller); a pytest that a test starts has another parent and ignores it.
    """
    from shoal.plan import PlanError, RunPlan
    from shoal.plugin.state import parent_token

    text = os.environ.pop(naming.ENV_PLAN, None)
    if text is None:
        return None
    try:
        plan = RunPlan.from_json(text)
    except PlanError:
        return None
    if plan.owner != parent_token() or plan.project_root != str(config.rootpath):
        return None
    state = RunState(plan, naming.worker_id(os.environ["PYTEST_XDIST_WORKER"]), False)
    if plan.configured:
        state.export()
    return state


def _owner(config: pytest.Config) -> RunState:
    """The state of the process that owns the run: a plan handed in, or built now."""
    from shoal.plugin.state import build_plan

    carried = [p for p in config.pluginmanager.get_plugins() if isinstance(p, PlanCarrier)]
    plan = build_plan(config, carried[0].namespace if carried else None)
    state = RunState(plan, naming.MAIN_WORKER, is_controller=_runs_workers(config))
    shared = os.environ.get(naming.ENV_NAMESPACE_SHARED) == plan.namespace
    if plan.origin == "forced" and not shared:
        state.hold_forced_namespace()
    if state.is_controller and plan.configured:
        state.set_environment({naming.ENV_PLAN: plan.to_json()})
    elif plan.configured:
        state.prepare()
    return state


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    with shoal_errors_as_usage_errors(), startup.shoal_clock(config):
        if workerinput is not None:
            _configure_worker(config, workerinput)
        elif STATE not in config.stash and not _looking_only(config):
            config.stash[STATE] = _owner(config)  # loaded after the initial conftests
    state = config.stash.get(STATE, None)
    from shoal.plugin.shard import register as register_shard

    with shoal_errors_as_usage_errors():
        # Before the order: both sort last, and the order must see only this shard's tests.
        register_shard(config, state)
    if state is None:
        return
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(state), "shoal-xdist")
        from shoal.plugin.order import register as register_order

        register_order(config, state)
    from shoal.plugin.django import register as register_django

    register_django(config)  # only when pytest-django is active
    if config.getoption("shoal_report"):
        startup.register(config)  # in the workers too: they send their marks
    # Only the process that sees every test writes the report: not an xdist worker.
    if config.getoption("shoal_report") and workerinput is None:
        from shoal.plugin.report import ReportCollector

        config.pluginmanager.register(ReportCollector(state, config), "shoal-report")


def _configure_worker(config: pytest.Config, workerinput: dict[str, Any]) -> None:
    """The controller's plan, from workerinput: it wins over what start-up inherited."""
    from shoal.plan import RunPlan
    from shoal.plugin.state import worker_state

    plan = RunPlan.from_json(workerinput[naming.WORKERINPUT_PLAN])
    state = config.stash.get(STATE, None)
    if state is None or state.plan != plan:
        if state is not None:
            state.restore_environment()
        state = worker_state(plan, workerinput)
        config.stash[STATE] = state
    if plan.configured:
        state.prepare()


class _XdistHooks:
    def __init__(self, state: RunState) -> None:
        self.state = state

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        # Every worker of this invocation runs the controller's plan.
        node.workerinput[naming.WORKERINPUT_PLAN] = self.state.plan.to_json()

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        output = getattr(node, "workeroutput", {})
        self.state.kept.extend(output.get(naming.WORKEROUTPUT_KEPT, []))
        self.state.problems.extend(output.get(naming.WORKEROUTPUT_PROBLEMS, []))
        self.state.left += int(output.get(naming.WORKEROUTPUT_LEFT, 0))
        self.state.to_drop.extend(output.get(naming.WORKEROUTPUT_TO_DROP, []))
        if naming.WORKEROUTPUT_TEARDOWN in output:
            teardown = float(output[naming.WORKEROUTPUT_TEARDOWN])
            self.state.teardown_s[str(node.gateway.id)] = teardown
        if output.get(naming.WORKEROUTPUT_FAILURE):
            self.state.worker_failures.append(str(output[naming.WORKEROUTPUT_FAILURE]))
        if output.get(naming.WORKEROUTPUT_TIMINGS):
            from shoal.pg.worker import Timing

            timings = [Timing(**t) for t in output[naming.WORKEROUTPUT_TIMINGS]]
            self.state.worker_timings.setdefault(str(node.gateway.id), []).extend(timings)


def pytest_report_header(config: pytest.Config) -> str | None:
    state = config.stash.get(STATE, None)
    return None if state is None else f"shoal: namespace {state.namespace.describe()}"


def pytest_unconfigure(config: pytest.Config) -> None:
    unconfigured = time.time()
    collector = config.pluginmanager.get_plugin("shoal-report")
    for carrier in config.pluginmanager.get_plugins():
        if isinstance(carrier, PlanCarrier) and collector is not None:
            carrier.report = collector.path
    state = config.stash.get(STATE, None)
    if state is not None:
        state.restore_environment()
        state.release_namespace()
        # The interpreter's last garbage collections walk the whole heap (a setup's
        # metadata, pydantic's schemas): measured 1.0-1.4 s after the last atexit handler
        # of a run's controller, 0.05-0.18 s with the heap frozen first. Frozen at exit,
        # so pytest's own collection at unconfigure (which reports unraisable exceptions)
        # still sees everything made since the freeze after collection.
        atexit.register(gc.freeze)
        if not hasattr(config, "workerinput"):
            from shoal.plugin.refill import after_run

            after_run(config)  # the reaper, and the warm pool's refill, in the background
    if collector is not None:
        collector.after_run(unconfigured, time.time())


@pytest.fixture(scope="session")
def _shoal_worker(request: pytest.FixtureRequest) -> Iterator[RunState]:
    """This worker's schemas, provisioned once. A failure is kept in the state, not
    raised: raised here, pytest would print it again for every test of the worker."""
    state = request.config.stash.get(STATE, None)
    if state is None:
        pytest.fail("shoal: this run only looks (--help, --co, …): no database", pytrace=False)
    try:
        with shoal_errors_as_usage_errors():
            schemas = state.prepare()
            state.handles = schemas.provision()
    except pytest.UsageError as exc:
        # Reported once, in the summary, and the run fails (pytest_sessionfinish). Raised
        # as an error here, pytest would print it again for every test of the worker.
        state.failure = f"worker {state.worker}: {str(exc).removeprefix('shoal: ')}"
        workeroutput = getattr(request.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput[naming.WORKEROUTPUT_FAILURE] = state.failure
        pytest.skip("shoal: not run: this worker has no schemas (why: the end of the output)")
    state.timings = schemas.timings
    try:
        yield state
    finally:
        keep = state.plan.keep_on_failure and request.session.testsfailed > 0
        mark = time.perf_counter()
        failed_drops = schemas.teardown(keep=keep, rename=True)
        state.teardown_s[state.worker] = time.perf_counter() - mark
        state.to_drop += schemas.to_drop
        state.problems += failed_drops
        state.left += len(failed_drops)
        if keep:
            state.kept += [
                f"{h.name}: schema {h.schema} — psql {_quote(_masked(h.url))}"
                for h in state.handles.values()
            ]
        workeroutput = getattr(request.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput[naming.WORKEROUTPUT_KEPT] = state.kept
            workeroutput[naming.WORKEROUTPUT_PROBLEMS] = state.problems
            workeroutput[naming.WORKEROUTPUT_LEFT] = state.left
            workeroutput[naming.WORKEROUTPUT_TIMINGS] = [asdict(t) for t in state.timings]
            workeroutput[naming.WORKEROUTPUT_TO_DROP] = state.to_drop
            workeroutput[naming.WORKEROUTPUT_TEARDOWN] = state.teardown_s[state.worker]


@pytest.fixture(scope="session", autouse=True)
def _shoal_autouse(request: pytest.FixtureRequest) -> None:
    """Provision before anything else of the session when the project configures shoal:
    the suite's own session fixtures may create tables through the exported variables."""
    state = request.config.stash.get(STATE, None)
    if state is not None and state.configured:
        request.getfixturevalue("_shoal_worker")


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze the heap once the tests are collected, before the first one runs.

    What exists by then (the imports, the plugins, the collected items) lives for the
    whole session and is never garbage a test made. Frozen, it is left out of every
    collection after it: those the tests' allocations trigger, and pytest's own at
    unconfigure, which still finds the cycles the tests leave (and the unraisable
    exceptions in them). Measured in an xdist worker of a 40-test run: from its last test
    to its exit 0.115 s, 0.039 s with the heap frozen here; with four such runs on two
    cores, every worker's collection ran at once.
    """
    if STATE in session.config.stash and not session.config.option.collectonly:
        gc.freeze()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash.get(STATE, None)
    failed = state is not None and (state.failure is not None or state.worker_failures)
    if failed and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if state is not None and state.is_controller:
        # An xdist controller runs no test code, yet pytest collects its whole heap once
        # more at unconfigure (looking for unraisable exceptions): 0.3-0.7 s measured with
        # a 220-table setup's metadata loaded for its fingerprint. Nothing of it is garbage
        # a test made, so it is frozen out of that collection.
        gc.freeze()


def provisioning_summary(namespace: str, timings: list[Timing]) -> str:
    total = [t.total_s for t in timings]
    slowest = max(timings, key=lambda t: t.total_s)
    made = [
        plural(count, kind)
        for kind in ("schema", "database")
        if (count := sum(t.kind == kind for t in timings))
    ]
    return (
        f"shoal: namespace {namespace}: {' and '.join(made)} provisioned, "
        f"slowest {slowest.total_s:.2f}s ({slowest.database}: setup {slowest.setup_s:.2f}s, "
        f"slot wait {slowest.slot_wait_s:.2f}s), total {sum(total):.2f}s"
    )


def _masked(url: str) -> str:
    from shoal.conninfo import mask

    return mask(url)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


@pytest.fixture(scope="session")
def shoal_namespace(request: pytest.FixtureRequest) -> str:
    """This invocation's namespace token (the same in every xdist worker)."""
    return str(request.config.stash[STATE].plan.namespace)


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
        terminalreporter.write_line(provisioning_summary(state.plan.namespace, timings))
    if state.kept:
        terminalreporter.section("shoal: schemas kept for inspection")
        for line in state.kept:
            terminalreporter.write_line(line)
    for problem in state.problems:
        terminalreporter.write_line(f"shoal: {problem}", yellow=True)
    if state.left:
        terminalreporter.write_line(
            f"shoal: {plural(state.left, 'schema')} could not be dropped; `shoal sweep` "
            "will remove them once this run has ended",
            yellow=True,
        )
    failures = [state.failure] if state.failure else []
    for line in failure_lines(failures + state.worker_failures):
        terminalreporter.write_line(f"shoal: ERROR: {line}", red=True)
    if state.configured and not hasattr(config, "workerinput"):
        for line in _last_refill(state):
            terminalreporter.write_line(line, yellow=True)


def failure_lines(failures: list[str]) -> list[str]:
    """Provisioning failures (``worker <id>: <error>``), each error once: the workers of a
    run that fail alike (a migration that raises) fail with the same message."""
    by_error: dict[str, list[str]] = {}
    for failure in failures:
        worker, sep, error = failure.partition(": ")
        if not (sep and worker.startswith("worker ")):
            worker, error = "", failure
        by_error.setdefault(error, []).append(worker.removeprefix("worker "))
    lines = []
    for error, workers in by_error.items():
        named = sorted((w for w in workers if w), key=lambda w: (len(w), w))
        who = "worker" if len(named) == 1 else "workers"
        lines.append(f"{who} {', '.join(named)}: {error}" if named else error)
    return lines


def _last_refill(state: RunState) -> list[str]:
    """Lines on the project's last background refill, when it failed."""
    from shoal import refill_log
    from shoal.plugin.refill import home_of

    record = refill_log.read(home_of(state), Path(state.plan.project_root))
    if record is None or not record.failed:
        return []
    lines = [f"shoal: the last pool refill ({record.finished}) failed; the pool stays empty:"]
    lines += [f"shoal:   {database}: {error}" for database, error in record.errors.items()]
    if record.log:
        lines.append(f"shoal:   log: {record.log}")
    return lines
