"""``django:<alias>``: Django's ``migrate`` for one alias, inside the schema being built.

Registered in the ``shoal.setups`` entry point group, so worker builds, ``shoal pool
warm`` and the background refill all build through :func:`shoal.setups.run` and every
build is verified. The fingerprint covers what decides the tables: the Django version,
the engine, the alias, INSTALLED_APPS, the routers (and their source), and every
migration file (for an app without migrations, its models module).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal import conninfo
from shoal.binding import pgoptions
from shoal.setups.kind import SpecProblem

if TYPE_CHECKING:
    from shoal.binding import DatabaseHandle

PREFIX = "django"
SETTINGS_MODULE_ENV = "DJANGO_SETTINGS_MODULE"
_IGNORED_SUFFIXES = (".pyc", ".pyo")


def spec(alias: str) -> str:
    return f"{PREFIX}:{alias}"


class DjangoMigrationsKind:
    name = "django"
    expected = "'django:<alias of settings.DATABASES>' (Django's migrate)"

    def parse(self, spec: str, root: Path) -> Any | None:
        kind, sep, alias = spec.partition(":")
        if kind != PREFIX or not sep:
            return None
        if not alias:
            raise SpecProblem("no alias after 'django:'")
        settings = configured_settings(root)
        if alias not in settings.DATABASES:
            raise SpecProblem(
                f"alias {alias!r} is not in settings.DATABASES of {settings_module()}"
            )
        return alias

    def fingerprint(self, target: Any) -> Sequence[bytes] | None:
        return fingerprint_parts(str(target))

    def run(self, target: Any, handle: DatabaseHandle) -> None:
        from django.core.management import call_command

        alias = str(target)
        with bound(alias, handle):
            # As Django's own test-database creation runs it.
            call_command("migrate", database=alias, run_syncdb=True, interactive=False, verbosity=0)


def settings_module() -> str:
    return os.environ.get(SETTINGS_MODULE_ENV) or "the Django settings"


def configured_settings(root: Path) -> Any:
    """Django's settings, set up from DJANGO_SETTINGS_MODULE when no one has yet (a
    refill or ``shoal pool warm`` process)."""
    import django
    from django.conf import settings

    if not settings.configured:
        if not os.environ.get(SETTINGS_MODULE_ENV):
            raise SpecProblem(f"Django is not configured here: {SETTINGS_MODULE_ENV} is not set")
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
    from django.apps import apps

    if not apps.ready:
        django.setup()
    return settings


def fingerprint_parts(alias: str) -> list[bytes]:
    import django
    from django.apps import apps
    from django.conf import settings

    settings_dict = settings.DATABASES[alias]
    parts = [
        b"django",
        django.get_version().encode(),
        str(settings_dict.get("ENGINE", "")).encode(),
        alias.encode(),
        "\n".join(settings.INSTALLED_APPS).encode(),
    ]
    for router in settings.DATABASE_ROUTERS:
        parts += [b"router", str(router if isinstance(router, str) else type(router)).encode()]
        parts += _source_of(router if isinstance(router, str) else type(router).__module__)
    for config in sorted(apps.get_app_configs(), key=lambda c: c.label):
        parts += [b"app", config.label.encode(), *_app_files(config)]
    return parts


def _app_files(config: Any) -> list[bytes]:
    """The app's migration files, relative names and contents; its models without them."""
    import importlib

    from django.db.migrations.loader import MigrationLoader

    module_name, _explicit = MigrationLoader.migrations_module(config.label)
    directory: Path | None = None
    if module_name is not None:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            module = None
        paths = list(getattr(module, "__path__", []) or [])
        directory = Path(paths[0]) if paths else None
    if directory is None or not directory.is_dir():
        models = getattr(config, "models_module", None)
        path = getattr(models, "__file__", None)
        return [b"models", Path(path).read_bytes()] if path else [b"no models"]
    parts: list[bytes] = []
    for path in sorted(directory.rglob("*")):
        if (
            path.is_file()
            and "__pycache__" not in path.parts
            and path.suffix not in _IGNORED_SUFFIXES
        ):
            parts += [path.relative_to(directory).as_posix().encode(), path.read_bytes()]
    return parts


def _source_of(dotted: str) -> list[bytes]:
    import importlib.util

    module = dotted if "." not in dotted else dotted.rsplit(".", 1)[0]
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return []
    origin = getattr(found, "origin", None)
    return [Path(origin).read_bytes()] if origin and Path(origin).is_file() else []


@contextmanager
def bound(alias: str, handle: DatabaseHandle) -> Iterator[None]:
    """The alias's connection pointed at ``handle``'s database and schema for the duration,
    then exactly as it was (the same settings dict: Django's connections share it)."""
    from django.db import connections

    connection = connections[alias]
    settings_dict = connection.settings_dict
    saved = dict(settings_dict)
    options = dict(settings_dict.get("OPTIONS") or {})
    connection.close()
    settings_dict["NAME"] = conninfo.dbname(handle.base_url)
    settings_dict["OPTIONS"] = {
        **options,
        "options": pgoptions(options.get("options"), handle.search_path),
        "application_name": handle.label,
    }
    try:
        yield
    finally:
        connection.close()
        settings_dict.clear()
        settings_dict.update(saved)
        _forget_content_types()


def _forget_content_types() -> None:
    # ContentType ids cached while building belong to the built schema.
    from django.apps import apps

    if apps.is_installed("django.contrib.contenttypes"):
        from django.contrib.contenttypes.models import ContentType

        ContentType.objects.clear_cache()
