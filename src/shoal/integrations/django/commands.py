"""The Django pools for ``shoal pool warm | status | clear``: the warm pools of migrated
schemas in Django's test databases, which a project without ``[tool.shoal]`` names
nowhere but in Django's settings.

``warm`` loads Django's settings as pytest-django would (``DJANGO_SETTINGS_MODULE``,
else the ``DJANGO_SETTINGS_MODULE`` ini key of the project's ``pyproject.toml`` or
``pytest.ini``), plans the Django part exactly as a run does, and builds through the
background refill's own :func:`shoal.integrations.django.warm.warm`: one path. ``status``
and ``clear`` look at the Django test databases shoal has put schemas in for the
project (:mod:`shoal.integrations.django.known`).
"""

from __future__ import annotations

import configparser
import os
import sys
import tomllib
from pathlib import Path

from shoal import naming
from shoal.config import Settings
from shoal.integrations.django import known, migrations
from shoal.integrations.django.plan import DjangoPlan, build
from shoal.namespace import Namespace
from shoal.plan import RunPlan


def settings_module(root: Path) -> str | None:
    """The project's Django settings module, as pytest-django finds it; None without one."""
    if os.environ.get(migrations.SETTINGS_MODULE_ENV):
        return os.environ[migrations.SETTINGS_MODULE_ENV]
    ini = _ini(root)
    value = ini.get(migrations.SETTINGS_MODULE_ENV)
    return str(value) if value else None


def _ini(root: Path) -> dict[str, object]:
    """pytest's ini options of the project: ``[tool.pytest.ini_options]`` or pytest.ini."""
    pytest_ini = root / "pytest.ini"
    if pytest_ini.is_file():
        parser = configparser.ConfigParser()
        try:
            parser.read(pytest_ini)
        except configparser.Error:
            return {}
        return dict(parser["pytest"]) if parser.has_section("pytest") else {}
    pyproject = root / "pyproject.toml"
    try:
        document = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    options = document.get("tool", {}).get("pytest", {}).get("ini_options", {})
    return options if isinstance(options, dict) else {}


def _import_path(root: Path) -> None:
    """The project's modules importable as under pytest: its root, its ``pythonpath``."""
    found = _ini(root).get("pythonpath") or []
    entries = found.split() if isinstance(found, str) else found
    listed = [str(e) for e in entries] if isinstance(entries, list) else []
    for entry in [".", *listed]:
        path = str((root / entry).resolve())
        if path not in sys.path:
            sys.path.insert(0, path)


def plan(settings: Settings, namespace: Namespace, pool_size: int) -> DjangoPlan | None:
    """The project's Django plan, as a run would make it (Django's test databases created
    if missing, and remembered for ``shoal sweep``, ``shoal ps`` and ``status``); None
    when the project has no Django settings or no alias on PostgreSQL."""
    module = settings_module(settings.project_root)
    if module is None:
        return None
    os.environ[migrations.SETTINGS_MODULE_ENV] = module
    _import_path(settings.project_root.resolve())
    migrations.configured_settings(settings.project_root.resolve())
    run = RunPlan(
        namespace=namespace.token,
        origin=namespace.origin,
        owner="",
        project_root=str(settings.project_root.resolve()),
        configured=False,
        configured_tail=settings.search_path_tail,
        ddl_slots=settings.ddl_slots,
        connect_timeout=settings.connect_timeout,
        pool_size=pool_size,
        home=str(settings.home) if settings.home else None,
        project=settings.project,
        sources=settings.sources(),
    )
    found = build(
        run,
        names=settings.django_databases,
        names_source=settings.source_of("django_databases"),
    )
    if found is None or not found.aliases:
        return None
    known.remember(
        settings.home or _default_home(),
        settings.project,
        {t.name: t.url for t in found.plan.targets},
    )
    return found


def _default_home() -> Path:
    from shoal.embedded import default_home

    return default_home()


def databases(settings: Settings, taken: dict[str, str]) -> dict[str, str]:
    """``django:<name>`` → URL of the project's remembered Django test databases."""
    return known.for_commands(settings.home, settings.project, taken, settings.connect_timeout)


def fingerprints(django: DjangoPlan | None) -> dict[str, str | None]:
    """``django:<name>`` → the current fingerprint of its migrations."""
    if django is None:
        return {}
    return {naming.django_listing_name(t.name): t.fingerprint for t in django.plan.targets}


def current_fingerprints(settings: Settings) -> dict[str, str | None]:
    """``django:<name>`` → the fingerprint the project's migrations have now, computed
    without creating anything; empty when Django's settings cannot be loaded here (the
    pools are still counted, none of them called current)."""
    return _fingerprints(settings) or {}


def template_fingerprints(settings: Settings) -> frozenset[str] | None:
    """The fingerprints of the template databases the project's runs clone from now
    (database mode), for the sweep to drop the project's others; None when they cannot
    be computed here (no Django settings module found, settings or migrations that do
    not import): the sweep then keeps every template."""
    found = _fingerprints(settings)
    if found is None:
        return None
    return frozenset(fingerprint for fingerprint in found.values() if fingerprint is not None)


def _fingerprints(settings: Settings) -> dict[str, str | None] | None:
    from shoal import setups
    from shoal.integrations.django import aliases
    from shoal.integrations.django.plan import vendors

    module = settings_module(settings.project_root)
    if module is None:
        return None
    os.environ.setdefault(migrations.SETTINGS_MODULE_ENV, module)
    root = settings.project_root.resolve()
    _import_path(root)
    try:
        django_settings = migrations.configured_settings(root)
        databases = django_settings.DATABASES
        resolution = aliases.resolve(databases, vendors(databases), settings.django_databases)
        primary = {name: alias for alias, name in reversed(resolution.aliases.items())}
        found: dict[str, str | None] = {}
        for name in resolution.targets:
            setup = setups.load(
                migrations.spec(primary[name]), key=name, source="Django settings", root=root
            )
            found[naming.django_listing_name(name)] = setups.fingerprint(
                setup, tail=settings.search_path_tail
            )
        return found
    except Exception:  # settings that do not import here: unknown, never "none current"
        return None
