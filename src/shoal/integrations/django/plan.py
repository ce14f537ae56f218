"""The Django part of a run's plan: built once by the process that owns the run.

It is a :class:`~shoal.plan.RunPlan` of its own (the run's namespace and settings, the
test databases as targets) plus which alias uses which of them. It travels to xdist
workers through ``workerinput`` like the run's plan, and workers never read Django's
settings to rebuild it (DESIGN invariant 12): they only bind their connections by it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

from shoal import conninfo, naming, setups
from shoal.binding import pgoptions
from shoal.errors import ServerUnreachable, UsageError
from shoal.integrations.django import aliases as django_aliases
from shoal.integrations.django import database, migrations
from shoal.pg.connect import admin_connect
from shoal.pg.databases import CreateDatabaseRefused, build_template, check_can_create
from shoal.pg.slots import Lease, control_url
from shoal.plan import PlanError, RunPlan, Target
from shoal.targets import check, probe

FORMAT: Final = 1
Mode = Literal["schema", "database"]


@dataclass(frozen=True)
class DjangoPlan:
    plan: RunPlan  # the run's plan, its targets the Django test databases
    aliases: dict[str, str]  # alias → target name
    notes: tuple[str, ...] = ()  # aliases left alone, and why
    # "schema": a schema per worker in Django's test database; "database": a database
    # per worker, cloned from the template of the target's fingerprint.
    mode: Mode = "schema"

    def to_json(self) -> str:
        return json.dumps(
            {
                "shoal_django": FORMAT,
                "plan": self.plan.to_json(),
                "aliases": self.aliases,
                "notes": list(self.notes),
                "mode": self.mode,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> DjangoPlan:
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("shoal_django") != FORMAT:
                raise ValueError("not a shoal Django plan of this version")
            return cls(
                plan=RunPlan.from_json(str(data["plan"])),
                aliases={str(k): str(v) for k, v in dict(data["aliases"]).items()},
                notes=tuple(str(n) for n in data.get("notes", ())),
                mode="database" if data.get("mode") == "database" else "schema",
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise PlanError(f"cannot read the Django plan: {exc}") from None

    def target(self, name: str) -> Target:
        return next(t for t in self.plan.targets if t.name == name)

    def test_database(self, name: str, worker: str) -> str:
        """The database the worker's aliases of target ``name`` use as their test database."""
        test_name = conninfo.dbname(self.target(name).url)
        if self.mode == "database":
            return naming.worker_database_name(test_name, self.plan.namespace, worker)
        return test_name

    def bind(self, databases: MutableMapping[str, Any], worker: str) -> None:
        """Point every isolated alias at its test database, the worker's schema as its
        only search path (then the checked tail) and the worker's label, in place; in
        database mode at the worker's own database, the search path left as it is.

        In place: Django's connections share these dicts, so a connection opened later
        (or opened again) uses them.
        """
        schema = naming.schema_name(self.plan.namespace, worker)
        label = naming.connection_label(worker, self.plan.namespace)
        search_path = (schema, *self.plan.tail)
        for alias, name in self.aliases.items():
            settings_dict = databases[alias]
            test = settings_dict.setdefault("TEST", {})
            if not test.get("MIRROR"):
                test["NAME"] = self.test_database(name, worker)
            options = dict(settings_dict.get("OPTIONS") or {})
            if self.mode == "schema":
                options["options"] = pgoptions(options.get("options"), search_path)
            options["application_name"] = label
            settings_dict["OPTIONS"] = options

    def header(self) -> list[str]:
        lines = []
        for alias, name in self.aliases.items():
            target = self.target(name)
            named = "" if name == alias else f" (shoal database {name!r})"
            if self.mode == "database":
                fingerprint = target.fingerprint
                source = (
                    f"cloned from {naming.template_database_name(fingerprint)}"
                    if fingerprint
                    else "empty"
                )
                where = conninfo.mask(target.control_url)
                pattern = self.test_database(name, naming.MAIN_WORKER).removesuffix("_main")
                lines.append(
                    f"shoal: Django alias {alias!r} → {pattern}_<worker>{named}: "
                    f"a database per worker, {source} ({where})"
                )
                continue
            lines.append(
                f"shoal: Django alias {alias!r} → {conninfo.dbname(target.url)}{named}, "
                f"a schema per worker ({conninfo.mask(target.url)})"
            )
        return lines + [f"shoal: {note}" for note in self.notes]


def vendors(databases: Mapping[str, Any]) -> dict[str, str]:
    """Each alias's vendor ("postgresql", "sqlite", …), as its backend says."""
    from django.db import connections

    found = {}
    for alias in databases:
        try:
            found[alias] = str(connections[alias].vendor)
        except Exception:  # a backend that cannot be loaded: shoal leaves the alias alone
            found[alias] = ""
    return found


def build(
    run: RunPlan,
    *,
    create_db: bool = False,
    use_migrations: bool = True,
    names: Mapping[str, str] | None = None,
    names_source: str = "default",
    mode: Mode = "schema",
    mode_source: str = "default",
) -> DjangoPlan | None:
    """The Django plan of ``run`` from the loaded Django settings; None when no alias is
    on PostgreSQL. Creates each test database that is missing (and only that); in
    database mode, checks the role may create databases and builds each template that
    is missing instead.

    ``names``: alias → the shoal database name a project chose for its test database.
    """
    from django.conf import settings

    databases = settings.DATABASES
    for alias, name in (names or {}).items():
        if alias not in databases:
            raise UsageError(
                f"django_databases.{alias}",
                name,
                names_source,
                f"settings.DATABASES has no alias {alias!r}; expected one of "
                + ", ".join(repr(a) for a in databases),
            )
    try:
        resolution = django_aliases.resolve(databases, vendors(databases), names)
    except django_aliases.NameClash as exc:
        raise UsageError(
            f"django_databases.{exc.alias}",
            exc.name,
            names_source,
            f"{exc}; expected one name per test database",
        ) from None
    if not resolution.targets:
        notes = tuple(resolution.notes())
        return None if not notes else DjangoPlan(replace(run, targets=()), {}, notes)
    primary = {name: alias for alias, name in reversed(resolution.aliases.items())}
    controls: dict[str, str] = {}
    targets = []
    pooled = run.pool_size > 0 and not create_db and use_migrations and mode == "schema"
    # Database mode: a template per fingerprint (with --create-db each worker migrates).
    templated = mode == "database" and not create_db and use_migrations
    for name, url in resolution.targets.items():
        alias = primary[name]
        settings_dict = databases[alias]
        key = f"DATABASES[{alias!r}]"
        cluster = conninfo.cluster_key(url)
        try:
            if cluster not in controls:
                controls[cluster] = control_url(url, run.connect_timeout)
            if mode == "database":
                with admin_connect(
                    controls[cluster], naming.tool_label("probe"), timeout=run.connect_timeout
                ) as c:
                    try:
                        check_can_create(c, conninfo.mask(controls[cluster]))
                    except CreateDatabaseRefused as exc:
                        raise UsageError("django_mode", mode, mode_source, str(exc)) from None
                    version, capacity = probe(c)
            else:
                test = settings_dict.get("TEST") or {}
                database.ensure(
                    url,
                    controls[cluster],
                    timeout=run.connect_timeout,
                    template=test.get("TEMPLATE"),
                    encoding=test.get("CHARSET"),
                )
                with admin_connect(
                    url, naming.tool_label("probe"), timeout=run.connect_timeout
                ) as c:
                    version, capacity = probe(c)
        except ServerUnreachable as exc:
            raise UsageError(key, conninfo.mask(url), "Django settings", str(exc)) from None
        setup = (
            setups.load(migrations.spec(alias), key=key, source="Django settings", root=run.root)
            if use_migrations
            else None
        )
        targets.append(
            Target(
                name=name,
                url=url,
                control_url=controls[cluster],
                setup=setup,
                fingerprint=(
                    setups.fingerprint(setup, tail=run.configured_tail)
                    if pooled or templated
                    else None
                ),
                server_version=version,
                lock_capacity=capacity,
            )
        )
    if mode == "database":
        # The whole database is the worker's: no search path to pin, no tail to check.
        plan = replace(run, targets=tuple(targets), tail=(), pool_size=0)
        build_templates(plan)
        return DjangoPlan(plan, dict(resolution.aliases), tuple(resolution.notes()), mode)
    tail = check(targets, run.configured_tail, run.connect_timeout)
    plan = replace(run, targets=tuple(targets), tail=tail, pool_size=run.pool_size if pooled else 0)
    return DjangoPlan(plan, dict(resolution.aliases), tuple(resolution.notes()))


def build_templates(plan: RunPlan) -> None:
    """Each fingerprinted target's template, built once by whoever gets there first
    (here: the process that owns the run, before any worker starts), under a lease."""
    leases: dict[str, Lease] = {}
    try:
        for target in plan.targets:
            if target.fingerprint is None:
                continue
            if target.cluster not in leases:
                leases[target.cluster] = Lease.open(
                    target.control_url,
                    plan.namespace,
                    naming.MAIN_WORKER,
                    plan.ddl_slots,
                    plan.connect_timeout,
                )
            build_template(
                target,
                target.fingerprint,
                namespace=plan.namespace,
                lease=leases[target.cluster],
                project=plan.project,
                timeout=plan.connect_timeout,
            )
    finally:
        for lease in leases.values():
            lease.close()
