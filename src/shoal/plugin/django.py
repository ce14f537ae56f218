"""pytest-django, isolated: registered by the shoal plugin when pytest-django is active.

The process that owns the run plans the Django part once, at session start (Django's
settings are loaded by then, whoever loaded them): which alias uses which test database,
each test database created if missing. Every process that runs tests then binds its
aliases in ``settings.DATABASES`` (TEST NAME, and ``OPTIONS``: the worker's schema as
the only search path, the worker's label), makes Django keep those test databases (it
never creates one over another run's, never drops one), and provisions the worker's
schemas before pytest-django's ``django_db_setup`` migrates: through shoal's own
WorkerSchemas, so leases, DDL slots, the warm pool, the sweep and teardown treat them
like every other schema. Nothing goes through PGOPTIONS: Django's connections carry
their options explicitly, so no exported variable reaches a database where shoal made
no schema.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import pytest

from shoal import naming
from shoal.plugin.boundary import shoal_errors_as_usage_errors
from shoal.plugin.refill import home_of
from shoal.plugin.state import STATE, RunState, load_settings

if TYPE_CHECKING:
    from shoal.integrations.django.plan import DjangoPlan
    from shoal.pg.worker import WorkerSchemas
    from shoal.plan import RunPlan, Target

PYTEST_DJANGO = "django"  # pytest-django's plugin name (its pytest11 entry point)
PLUGIN_NAME = "shoal-django"


def register(config: pytest.Config) -> None:
    """Register the integration when pytest-django is active in this run."""
    manager = config.pluginmanager
    if manager.hasplugin(PYTEST_DJANGO) and not manager.hasplugin(PLUGIN_NAME):
        manager.register(DjangoIntegration(config), PLUGIN_NAME)
        # The fixtures, module-level (pytest deprecates fixtures on plugin instances).
        manager.register(sys.modules[__name__], f"{PLUGIN_NAME}-fixtures")


def _django_configured() -> bool:
    if "django" not in sys.modules:
        return False
    from django.conf import settings

    return bool(settings.configured)


class DjangoIntegration:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.plan: DjangoPlan | None = None
        self.schemas: WorkerSchemas | None = None
        self.failed = False

    @property
    def state(self) -> RunState:
        return self.config.stash[STATE]

    @property
    def active(self) -> bool:
        return self.plan is not None and bool(self.plan.aliases)

    def pytest_configure(self, config: pytest.Config) -> None:
        # Called when registered, from the shoal plugin's own pytest_configure.
        workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
        if workerinput is None or naming.WORKERINPUT_DJANGO_PLAN not in workerinput:
            return
        from shoal.integrations.django.plan import DjangoPlan

        with shoal_errors_as_usage_errors():
            self.plan = DjangoPlan.from_json(workerinput[naming.WORKERINPUT_DJANGO_PLAN])

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # At session start, not configure: a conftest may configure Django's settings in
        # its own pytest_configure. Before xdist starts its workers (its sessionstart is
        # trylast), so they get the plan.
        if not _django_configured():
            return
        if hasattr(self.config, "workerinput"):
            self.bind()
            return
        from shoal.integrations.django import known
        from shoal.integrations.django.plan import build

        with shoal_errors_as_usage_errors(), _unblocked(self.config):
            # The owner's settings again (this process only): the names a project chose.
            settings = load_settings(self.config)
            self.plan = build(
                self.state.plan,
                create_db=bool(self.config.getvalue("create_db")),
                use_migrations=not self.config.getvalue("nomigrations"),
                names=settings.django_databases,
                names_source=settings.source_of("django_databases"),
                mode=settings.django_mode,
                mode_source=settings.source_of("django_mode"),
            )
            if self.active:
                assert self.plan is not None
                project = self.plan.plan.project or naming.project_key(self.plan.plan.project_root)
                # Database mode: the server, where the sweep and `shoal ps` list databases.
                database_mode = self.plan.mode == "database"
                known.remember(
                    home_of(self.state),
                    project,
                    {
                        t.name: t.control_url if database_mode else t.url
                        for t in self.plan.plan.targets
                    },
                )
        self.bind()

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        if self.plan is not None:
            node.workerinput[naming.WORKERINPUT_DJANGO_PLAN] = self.plan.to_json()

    def pytest_report_header(self, config: pytest.Config) -> list[str] | None:
        return None if self.plan is None else self.plan.header()

    def bind(self) -> None:
        """This process's aliases bound to its worker's schema; Django keeps the databases."""
        if not self.active:
            return
        assert self.plan is not None
        from django.conf import settings
        from django.db import connections

        self.plan.bind(settings.DATABASES, self.state.worker)
        for alias in self.plan.aliases:
            _keep_test_database(connections[alias].creation)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if not hasattr(config, "workerinput"):
            self.refill()

    def refill(self) -> int | None:
        """The warm pool of migrated schemas topped up after the run, detached."""
        plan = self.plan
        state = self.config.stash.get(STATE, None)
        if (
            plan is None
            or state is None
            or plan.plan.pool_size < 1
            or not any(t.fingerprint for t in plan.plan.targets)
            or state.every_build_failed
        ):
            return None
        from shoal.plugin.refill import refill_size, spawn

        argv = ["-m", "shoal.integrations.django.warm"]
        argv += ["--size", str(refill_size(state, plan.plan.pool_size))]
        return spawn(state, argv, {naming.ENV_DJANGO_PLAN: plan.to_json()})


@pytest.fixture(scope="session")
def django_db_modify_db_settings(request: pytest.FixtureRequest) -> None:
    """pytest-django's hook for changing settings before the test databases are set
    up: after its own suffixes (kept for the aliases shoal leaves alone), the
    aliases shoal isolates are bound again, and the worker's schemas provisioned."""
    request.getfixturevalue("django_db_modify_db_settings_parallel_suffix")
    integration = _integration(request.config)
    if not integration.active:
        return
    integration.bind()
    request.getfixturevalue("_shoal_django")


@pytest.fixture(scope="session")
def _shoal_django(request: pytest.FixtureRequest) -> Iterator[None]:
    """This worker's schema in every test database, provisioned once, dropped at the end."""
    integration = _integration(request.config)
    assert integration.plan is not None
    from shoal.pg.worker import WorkerSchemas

    state = integration.state
    if state.configured:
        request.getfixturevalue("_shoal_worker")  # the configured databases first
    blocker = request.getfixturevalue("django_db_blocker")
    if integration.plan.mode == "database":
        yield from _worker_databases(request, integration, blocker)
        return
    targets = list(integration.plan.plan.targets)
    schemas = WorkerSchemas.from_plan(integration.plan.plan, state.worker, targets)
    integration.schemas = schemas
    try:
        with blocker.unblock(), shoal_errors_as_usage_errors():
            schemas.prepare()
            schemas.provision()
    except pytest.UsageError as exc:
        # As for the configured databases: reported once, the worker's tests skipped.
        integration.failed = True
        state.failure = f"worker {state.worker}: {str(exc).removeprefix('shoal: ')}"
        _output(request.config, naming.WORKEROUTPUT_FAILURE, state.failure)
        pytest.skip("shoal: not run: this worker has no schemas (why: the end of the output)")
    state.timings.extend(schemas.timings)
    try:
        yield
    finally:
        from django.db import connections

        connections.close_all()  # an idle connection would only delay the drop
        keep = state.plan.keep_on_failure and request.session.testsfailed > 0
        # Renamed for the run's reaper, as the plugin's own worker schemas are.
        problems = schemas.teardown(keep=keep, rename=True)
        state.to_drop += schemas.to_drop
        state.problems.extend(problems)
        state.left += len(problems)
        if keep:
            state.kept += [f"{h.name}: schema {h.schema}" for h in schemas.handles().values()]
        _output(request.config, naming.WORKEROUTPUT_TO_DROP, state.to_drop)
        _output(request.config, naming.WORKEROUTPUT_PROBLEMS, state.problems)
        _output(request.config, naming.WORKEROUTPUT_KEPT, state.kept)
        _output(request.config, naming.WORKEROUTPUT_LEFT, state.left)
        _output(
            request.config,
            naming.WORKEROUTPUT_TIMINGS,
            [asdict(t) for t in state.timings],
        )


def _worker_databases(
    request: pytest.FixtureRequest, integration: DjangoIntegration, blocker: Any
) -> Iterator[None]:
    """Database mode: this worker's own database per test database, cloned, dropped at
    the end; a failure reported once, as for schemas."""
    from shoal.pg.databases import WorkerDatabases
    from shoal.pg.worker import Timing

    assert integration.plan is not None
    state = integration.state
    plan = integration.plan.plan
    databases = WorkerDatabases(
        list(plan.targets),
        plan.namespace,
        state.worker,
        ddl_slots=plan.ddl_slots,
        connect_timeout=plan.connect_timeout,
        project=plan.project,
        setup_of=_with_setup(plan),
    )
    try:
        with blocker.unblock(), shoal_errors_as_usage_errors():
            databases.prepare()
            databases.provision()
    except pytest.UsageError as exc:
        integration.failed = True
        state.failure = f"worker {state.worker}: {str(exc).removeprefix('shoal: ')}"
        _output(request.config, naming.WORKEROUTPUT_FAILURE, state.failure)
        pytest.skip("shoal: not run: this worker has no database (why: the end of the output)")
    state.timings.extend(
        Timing(
            database=p.database,
            slot_wait_s=p.slot_wait_s,
            create_s=p.create_s,
            total_s=p.total_s,
            start=p.start,
            kind="database",
        )
        for p in databases.provisioned
    )
    try:
        yield
    finally:
        from django.db import connections

        connections.close_all()
        keep = plan.keep_on_failure and request.session.testsfailed > 0
        problems = databases.teardown(keep=keep)
        state.problems.extend(problems)
        state.left += len(problems)
        if keep:
            state.kept += [f"{t.name}: database {databases.name_of(t)}" for t in plan.targets]
        _output(request.config, naming.WORKEROUTPUT_PROBLEMS, state.problems)
        _output(request.config, naming.WORKEROUTPUT_KEPT, state.kept)
        _output(request.config, naming.WORKEROUTPUT_LEFT, state.left)
        _output(request.config, naming.WORKEROUTPUT_TIMINGS, [asdict(t) for t in state.timings])


def _with_setup(plan: RunPlan) -> Callable[[Target], Target]:
    """A target with its setup parsed in this process (to build a template again)."""

    def parsed(target: Target) -> Target:
        from dataclasses import replace

        from shoal import setups

        if target.setup is not None or target.setup_spec is None:
            return target
        setup = setups.load(
            target.setup_spec,
            key=f"databases.{target.name}.setup",
            source="the Django plan",
            root=plan.root,
        )
        return replace(target, setup=setup)

    return parsed


@contextmanager
def _unblocked(config: pytest.Config) -> Iterator[None]:
    """pytest-django's database blocker lifted, as its fixtures lift it: database mode
    builds its templates with Django's ``migrate`` while the run is planned."""
    from pytest_django.plugin import blocking_manager_key

    blocker = config.stash.get(blocking_manager_key, None)
    if blocker is None:
        yield
        return
    with blocker.unblock():
        yield


def _integration(config: pytest.Config) -> DjangoIntegration:
    found = config.pluginmanager.get_plugin(PLUGIN_NAME)
    assert isinstance(found, DjangoIntegration)
    return found


def _keep_test_database(creation: Any) -> None:
    """Django's creation of one alias: keep the test database whatever ``--reuse-db``
    says. Without it Django answers an existing database by dropping it (under another
    run's feet) and drops its own at the end."""
    if getattr(creation, "_shoal_kept", False):
        return
    create = creation._create_test_db

    def _create_test_db(verbosity: int, autoclobber: bool, keepdb: bool = False) -> Any:
        return create(verbosity, autoclobber, keepdb=True)

    def _destroy_test_db(test_database_name: str, verbosity: int) -> None:
        return None

    creation._create_test_db = _create_test_db
    creation._destroy_test_db = _destroy_test_db
    creation._shoal_kept = True


def _output(config: pytest.Config, key: str, value: object) -> None:
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[key] = value
