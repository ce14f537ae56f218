"""What the plugin knows about this process's run: settings, namespace, worker, schemas."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest

from shoal import naming
from shoal.namespace import Namespace
from shoal.namespace import resolve as resolve_namespace

if TYPE_CHECKING:
    # Imported only where needed. xdist workers start before any test can run, and every
    # import here would delay the first test of every worker of every run: the settings
    # (pydantic, ~0.1 s) are loaded by a worker only when it provisions, the PostgreSQL
    # layer (psycopg) only by a process that provisions.
    from shoal.config import Settings
    from shoal.pg.targets import Target
    from shoal.pg.worker import DatabaseHandle, Timing, WorkerSchemas

STATE = pytest.StashKey["RunState"]()
# Settings that make sense as flat pytest ini keys (`shoal_<name>`).
INI_KEYS: Final = ("search_path_tail", "ddl_slots", "keep_on_failure", "reports_dir",
                   "connect_timeout")  # fmt: skip
# workerinput key: the controller's answer to "does the project configure shoal?"
CONFIGURED_KEY: Final = "shoal_configured"


def _pyproject(config: pytest.Config) -> Path | None:
    if config.inipath is not None and config.inipath.name == "pyproject.toml":
        return Path(config.inipath)
    candidate = Path(config.rootpath) / "pyproject.toml"
    return candidate if candidate.is_file() else None


def load_settings(config: pytest.Config) -> Settings:
    from shoal import config as shoal_config

    ini = {key: config.getini(f"shoal_{key}") or None for key in INI_KEYS}
    if ini.get("search_path_tail"):
        ini["search_path_tail"] = tuple(str(ini["search_path_tail"]).replace(",", " ").split())
    flags = {
        "keep_on_failure": config.getoption("shoal_keep_on_failure"),
        "ddl_slots": config.getoption("shoal_ddl_slots"),
    }
    return shoal_config.load_settings(
        flags=flags, ini=ini, pyproject=_pyproject(config), project_root=Path(config.rootpath)
    )


@dataclass
class RunState:
    namespace: Namespace
    worker: str
    is_controller: bool  # runs no tests itself: the xdist controller
    # The project told shoal about its databases: provision eagerly for every worker.
    configured: bool
    _load_settings: Callable[[], Settings]
    _settings: Settings | None = None
    kept: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    timings: list[Timing] = field(default_factory=list)  # this process's
    # Reported by xdist workers when they finish, by worker id.
    worker_timings: dict[str, list[Timing]] = field(default_factory=dict)
    schemas: WorkerSchemas | None = None
    handles: dict[str, DatabaseHandle] = field(default_factory=dict)
    _targets: list[Target] | None = None
    _saved_env: dict[str, str | None] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = self._load_settings()
        return self._settings

    @classmethod
    def from_config(cls, config: pytest.Config) -> RunState:
        """The state of this process; raises ConfigError on bad settings.

        An xdist worker takes the namespace and the "configured" verdict from its
        controller, which loaded (and checked) the same settings already; it loads them
        again only when it provisions.
        """

        def load() -> Settings:
            return load_settings(config)

        workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
        if workerinput is not None:  # both keys set by _XdistHooks.pytest_configure_node
            return cls(
                namespace=Namespace(workerinput["shoal_namespace"], "controller"),
                worker=naming.worker_id(workerinput["workerid"]),
                is_controller=False,
                configured=bool(workerinput[CONFIGURED_KEY]),
                _load_settings=load,
            )
        settings = load()
        numprocesses = config.getoption("numprocesses", None)
        return cls(
            namespace=resolve_namespace(os.environ, settings.namespace_force),
            worker=naming.MAIN_WORKER,
            is_controller=bool(numprocesses) and config.getoption("dist", "no") != "no",
            configured=settings.source_of("databases") != "default",
            _load_settings=load,
            _settings=settings,
        )

    def timings_by_worker(self) -> dict[str, list[Timing]]:
        """Provisioning timings of every process of the run that provisioned, by worker id."""
        mine = {self.worker: self.timings} if self.timings else {}
        return {**mine, **self.worker_timings}

    @property
    def resolved_targets(self) -> list[Target] | None:
        """The targets, if this process already resolved them (None: never, or it failed)."""
        return self._targets

    def targets(self) -> list[Target]:
        if self._targets is None:
            from shoal.pg.targets import resolve_targets

            self._targets = resolve_targets(self.settings)
        return self._targets

    def worker_schemas(self) -> WorkerSchemas:
        from shoal.pg.worker import WorkerSchemas

        return WorkerSchemas(
            self.targets(), self.namespace.token, self.worker,
            tail=self.settings.search_path_tail, ddl_slots=self.settings.ddl_slots,
            connect_timeout=self.settings.connect_timeout, pool=self.settings.pool_size > 0,
        )  # fmt: skip

    def prepare(self) -> WorkerSchemas:
        """Check the databases and export this worker's environment (once); create nothing.

        Exported as early as possible, so code that reads DATABASE_URL at import time
        (a module-level engine, a settings object) already sees the worker's URL.
        """
        if self.schemas is None:
            schemas = self.worker_schemas()
            schemas.check()
            schemas.prepare_pool()  # now, not on the clock of the first provisioning
            env = schemas.environment(os.environ)
            self._saved_env = {key: os.environ.get(key) for key in env}
            os.environ.update(env)
            self.schemas = schemas
        return self.schemas

    def restore_environment(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}
