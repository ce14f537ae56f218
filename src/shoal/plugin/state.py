"""What the plugin knows about this process's run: the plan, the worker, its schemas."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest

from shoal import naming
from shoal.namespace import Namespace
from shoal.plan import RunPlan

if TYPE_CHECKING:
    # Imported only where needed. xdist workers start before any test can run, and every
    # import here would delay the first test of every worker of every run: the settings
    # (pydantic, ~0.1 s) are loaded only by the process that builds the plan, the
    # PostgreSQL layer (psycopg) only by a process that provisions.
    from shoal.binding import DatabaseHandle
    from shoal.config import Settings
    from shoal.pg.worker import Timing, WorkerSchemas
    from shoal.plan import Target

STATE = pytest.StashKey["RunState"]()
# Settings that make sense as flat pytest ini keys (`shoal_<name>`).
INI_KEYS: Final = (
    "search_path_tail",
    "ddl_slots",
    "keep_on_failure",
    "reports_dir",
    "connect_timeout",
    "pool_size",
    "django_mode",
)


def _pyproject(config: pytest.Config) -> Path | None:
    from shoal.given import find_project_file

    return find_project_file(
        Path(config.inipath) if config.inipath is not None else None, Path(config.rootpath)
    )


def _given(config: pytest.Config) -> tuple[dict[str, Any], dict[str, Any], Path | None]:
    """What pytest's configuration gives shoal: its flags, its ini keys, its pyproject."""
    ini = {key: config.getini(f"shoal_{key}") or None for key in INI_KEYS}
    if ini.get("search_path_tail"):
        ini["search_path_tail"] = tuple(str(ini["search_path_tail"]).replace(",", " ").split())
    options = config.known_args_namespace
    flags = {
        "keep_on_failure": getattr(options, "shoal_keep_on_failure", None),
        "ddl_slots": getattr(options, "shoal_ddl_slots", None),
        "django_mode": getattr(options, "shoal_django_mode", None),
    }
    return flags, ini, _pyproject(config)


def load_settings(
    config: pytest.Config,
    given: tuple[dict[str, Any], dict[str, Any], Path | None] | None = None,
) -> Settings:
    """The settings of the process that owns the run, from its flags, ini and pyproject
    (``given``: those, when the caller has read them already)."""
    from shoal import config as shoal_config

    flags, ini, pyproject = given or _given(config)
    return shoal_config.load_settings(
        flags=flags, ini=ini, pyproject=pyproject, project_root=Path(config.rootpath)
    )


@dataclass
class RunState:
    plan: RunPlan
    worker: str
    is_controller: bool  # runs no tests itself: the xdist controller
    kept: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    timings: list[Timing] = field(default_factory=list)  # this process's
    # Reported by xdist workers when they finish, by worker id.
    worker_timings: dict[str, list[Timing]] = field(default_factory=dict)
    schemas: WorkerSchemas | None = None
    handles: dict[str, DatabaseHandle] = field(default_factory=dict)
    _targets: list[Target] | None = None
    _tail: tuple[str, ...] | None = None
    _saved_env: dict[str, str | None] = field(default_factory=dict)
    failure: str | None = None  # why this process could not provision, if it could not
    left: int = 0  # schemas whose drop failed at teardown (the sweep takes them)
    _held: list[Any] = field(default_factory=list)  # connections holding a forced namespace
    worker_failures: list[str] = field(default_factory=list)  # reported by xdist workers
    # Where this process's workers renamed schemas for the reaper (database, URLs), and
    # how long each worker's schema teardown took, by worker id.
    to_drop: list[dict[str, str]] = field(default_factory=list)
    teardown_s: dict[str, float] = field(default_factory=dict)

    @property
    def every_build_failed(self) -> bool:
        """Some process of the run tried to provision, and none managed to."""
        failed = bool(self.worker_failures) or self.failure is not None
        return failed and not self.timings_by_worker()

    @property
    def namespace(self) -> Namespace:
        return Namespace(self.plan.namespace, self.plan.origin)

    @property
    def configured(self) -> bool:
        """The project told shoal about its databases: provision eagerly for every worker."""
        return self.plan.configured

    def timings_by_worker(self) -> dict[str, list[Timing]]:
        """Provisioning timings of every process of the run that provisioned, by worker id."""
        mine = {self.worker: self.timings} if self.timings else {}
        return {**mine, **self.worker_timings}

    def targets(self) -> list[Target]:
        """The plan's targets; a run that configures none resolves the embedded default
        here, the first time a test asks for a database."""
        if self._targets is None:
            if self.plan.targets:
                self._targets, self._tail = list(self.plan.targets), self.plan.tail
            else:
                from shoal.targets import embedded_default

                self._targets, self._tail = embedded_default(self.plan)
        return self._targets

    def worker_schemas(self) -> WorkerSchemas:
        from dataclasses import replace

        from shoal.pg.worker import WorkerSchemas

        targets = self.targets()
        plan = replace(self.plan, tail=self._tail if self._tail is not None else self.plan.tail)
        return WorkerSchemas.from_plan(plan, self.worker, targets)

    def export(self, environ: Mapping[str, str] | None = None) -> None:
        """Export this worker's binding (once), before anything imports the suite's code.

        Exported as early as possible, so code that reads DATABASE_URL at import time
        (a module-level engine, a settings object in a conftest) already sees the
        worker's URL. Creates nothing.
        """
        if self.schemas is None:
            schemas = self.worker_schemas()
            env = schemas.environment(os.environ if environ is None else environ)
            self._saved_env.update({k: os.environ.get(k) for k in env if k not in self._saved_env})
            os.environ.update(env)
            self.schemas = schemas

    def prepare(self) -> WorkerSchemas:
        """Export the binding and open what provisioning needs; create nothing."""
        self.export()
        assert self.schemas is not None
        self.schemas.prepare()
        return self.schemas

    def hold_forced_namespace(self) -> None:
        """Refuse a forced namespace another live run uses; hold it for this run.

        Two runs in one namespace would create, claim and drop the same schemas.
        """
        from shoal.errors import NamespaceTaken, UsageError
        from shoal.pg.slots import hold_namespace

        controls = dict.fromkeys(t.control_url for t in self.plan.targets)
        try:
            for url in controls:
                self._held.append(
                    hold_namespace(url, self.plan.namespace, self.plan.connect_timeout)
                )
        except NamespaceTaken as exc:
            self.release_namespace()
            key = "namespace_force"
            raise UsageError(
                key,
                self.plan.namespace,
                self.plan.source_of(key),
                f"{exc}; wait until it has finished, or force another namespace",
            ) from None

    def release_namespace(self) -> None:
        for conn in self._held:
            conn.close()
        self._held = []

    def set_environment(self, env: Mapping[str, str]) -> None:
        """Set ``env``, remembering what to restore at the end of the run."""
        for key, value in env.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def restore_environment(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}


def worker_state(plan: RunPlan, workerinput: Mapping[str, Any]) -> RunState:
    """An xdist worker's state: the controller's plan, this worker's id."""
    return RunState(
        plan=plan, worker=naming.worker_id(str(workerinput["workerid"])), is_controller=False
    )


def parent_token() -> str:
    """``naming.runner_token`` of this process's parent (an xdist worker's controller)."""
    import psutil

    try:
        parent = psutil.Process().parent()
    except psutil.Error:
        return ""
    if parent is None:
        return ""
    try:
        return naming.runner_token(parent.pid, parent.create_time())
    except psutil.Error:
        return ""


def own_token() -> str:
    import psutil

    me = psutil.Process()
    return naming.runner_token(me.pid, me.create_time())


def build_plan(config: pytest.Config, namespace: Namespace | None = None) -> RunPlan:
    """The plan of a run this process owns: its settings, a namespace (``namespace``
    when ``shoal run`` chose it), its databases checked."""
    from shoal.given import nothing_given
    from shoal.namespace import resolve

    given = _given(config)
    flags, ini, pyproject = given
    if nothing_given(flags=flags, ini=ini, pyproject=pyproject, environ=os.environ):
        # The defaults' plan, without loading the settings' models: most runs of a
        # project that has shoal installed give it nothing (measured: 0.1 s of start-up).
        chosen = namespace or resolve(os.environ, None)
        return RunPlan.unconfigured(chosen.token, chosen.origin, own_token(), Path(config.rootpath))
    from shoal.targets import build_plan as plan_run

    settings = load_settings(config, given)
    if namespace is None:
        namespace = resolve(os.environ, settings.namespace_force)
    return plan_run(settings, namespace, own_token())
