"""The run plan: everything a run's processes need, resolved once by the process that owns it.

``shoal run`` or the pytest controller builds it (see :mod:`shoal.targets`) and hands it
over: in-process to pytest, through ``workerinput`` to every xdist worker, and in one
environment variable to the workers' start-up, where they export their binding before
any conftest is imported. Workers never load settings or probe a server to rebuild it
(DESIGN invariant 12). One JSON form, :meth:`RunPlan.to_json`, travels every way.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from shoal import conninfo, defaults, layers, naming
from shoal.errors import ShoalError

if TYPE_CHECKING:
    from shoal.setups import Setup

# Bumped when the form changes: a worker refuses a plan it cannot read.
PLAN_FORMAT: Final = 1

Origin = Literal["fresh", "forced", "runner", "controller"]


class PlanError(ShoalError):
    """A plan that cannot be read (another shoal version, or not a plan at all)."""


@dataclass(frozen=True)
class Target:
    """One configured database, resolved: where it is and what each schema in it gets.

    ``setup`` is the parsed setup in the process that parsed it; another process gets
    only ``setup_spec`` and parses it when it has to build (a claim from the warm pool
    never does).
    """

    name: str
    url: str  # libpq form
    control_url: str
    setup: Setup | None = field(default=None, compare=False)
    extensions: tuple[str, ...] = ()
    export_env: tuple[str, ...] = ()
    embedded: bool = False
    scheme: str = "postgresql"  # as configured; exported URLs keep it
    setup_spec: str | None = None
    fingerprint: str | None = None
    server_version: int = 0  # server_version_num; 0 when not probed
    lock_capacity: int = 0  # locks per transaction * (connections + prepared)
    # Locks a build of this setup takes, as the last recorded build measured it.
    lock_footprint: int | None = None

    def __post_init__(self) -> None:
        if self.setup is not None and self.setup_spec is None:
            object.__setattr__(self, "setup_spec", self.setup.spec)

    @functools.cached_property
    def cluster(self) -> str:
        # Cached: parsing the URL is looked up on a worker's provisioning clock.
        return conninfo.cluster_key(self.url)

    def as_json(self) -> dict[str, Any]:
        # Field by field, not dataclasses.asdict: asdict deep-copies every value, the
        # parsed setup too (a 220-table MetaData: seconds, on every hand-off).
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "setup"}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Target:
        names = {f.name for f in fields(cls)} - {"setup"}
        values = {k: v for k, v in data.items() if k in names}
        for key in ("extensions", "export_env"):
            values[key] = tuple(values.get(key, ()))
        return cls(**values)


@dataclass(frozen=True)
class RunPlan:
    """One run, resolved. ``targets`` is empty when the project configures no database:
    a worker then resolves the embedded default the first time a test asks for it."""

    namespace: str
    origin: Origin
    owner: str  # naming.runner_token of the process that built the plan
    project_root: str
    configured: bool
    targets: tuple[Target, ...] = ()
    # The search path after the worker schema: the configured tail, then the schemas the
    # configured extensions live in. Checked to hold no tables when the plan was built.
    tail: tuple[str, ...] = ()
    configured_tail: tuple[str, ...] = ()
    ddl_slots: int | Literal["auto"] = defaults.DDL_SLOTS
    connect_timeout: int = defaults.CONNECT_TIMEOUT_S
    pool_size: int = defaults.POOL_SIZE
    keep_on_failure: bool = False
    home: str | None = None
    project: str | None = None  # naming.project_key of the project root
    reports_dir: str = defaults.REPORTS_DIR  # absolute once resolved against the project root
    # Dotted setting key → where its value came from, for messages in any process.
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def unconfigured(cls, namespace: str, origin: Origin, owner: str, root: Path) -> RunPlan:
        """The plan of a run given no setting at all (:func:`shoal.given.nothing_given`):
        what the settings' defaults would give, without loading the settings' models."""
        return cls(
            namespace=namespace,
            origin=origin,
            owner=owner,
            project_root=str(root),
            configured=False,
            project=naming.project_key(str(root.resolve())),
            reports_dir=str(root / defaults.REPORTS_DIR),
        )

    @property
    def root(self) -> Path:
        return Path(self.project_root)

    def source_of(self, key: str) -> str:
        return layers.source_of(self.sources, key)

    def schema(self, worker: str) -> str:
        return naming.schema_name(self.namespace, worker)

    def to_json(self) -> str:
        data = {f.name: getattr(self, f.name) for f in fields(self)}  # no asdict: see Target
        data["targets"] = [t.as_json() for t in self.targets]
        return json.dumps({"shoal_plan": PLAN_FORMAT, **data}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunPlan:
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.pop("shoal_plan", None) != PLAN_FORMAT:
                raise ValueError("not a shoal run plan of this version")
            data["targets"] = tuple(Target.from_json(t) for t in data.get("targets", ()))
            for key in ("tail", "configured_tail"):
                data[key] = tuple(data.get(key, ()))
            plan = cls(**data)
        except (ValueError, TypeError) as exc:
            raise PlanError(f"cannot read the run plan: {exc}") from None
        if not naming.is_namespace(plan.namespace):
            raise PlanError(f"cannot read the run plan: namespace {plan.namespace!r}")
        return plan
