"""From settings to reachable databases: resolve URLs, start the embedded server if needed."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import psycopg

from shoal import conninfo
from shoal.config import Settings
from shoal.embedded import EmbeddedServer
from shoal.errors import ServerUnreachable, UsageError
from shoal.pg.connect import admin_connect
from shoal.pg.setup import SetupHook, parse_setup
from shoal.pg.slots import control_url


@dataclass(frozen=True)
class Target:
    """One configured database, resolved: where it is and what to run in each worker schema."""

    name: str
    url: str
    control_url: str
    setup: SetupHook | None
    extensions: tuple[str, ...]
    export_env: tuple[str, ...]
    embedded: bool

    @property
    def cluster(self) -> str:
        return conninfo.cluster_key(self.url)


def parse_hooks(settings: Settings) -> dict[str, SetupHook | None]:
    """Every database's setup hook, imported and checked (no server needed)."""
    hooks: dict[str, SetupHook | None] = {}
    for name, database in settings.databases.items():
        key = f"databases.{name}.setup"
        hooks[name] = (
            None
            if database.setup is None
            else parse_setup(
                database.setup, key=key, source=settings.source_of(key), root=settings.project_root
            )
        )
    return hooks


def resolve_url(settings: Settings, name: str, environ: Mapping[str, str]) -> str | None:
    """The database's literal URL, or None for the embedded server."""
    raw = settings.databases[name].url
    if raw is None or not raw.startswith("env:"):
        return raw
    key = f"databases.{name}.url"
    variable = raw.removeprefix("env:")
    value = environ.get(variable)
    if not value:
        raise UsageError(
            key, raw, settings.source_of(key), f"environment variable {variable} is not set"
        )
    return value


def database_urls(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> dict[str, tuple[str, bool]]:
    """name → (URL, on the embedded server?) for every configured database.

    The embedded server is started and its databases created if needed; other servers
    are not contacted.
    """
    environ = os.environ if environ is None else environ
    server: EmbeddedServer | None = None
    urls = {}
    for name in settings.databases:
        url = resolve_url(settings, name, environ)
        if url is None:
            server = server or EmbeddedServer(settings.home)
            server.ensure_running()
            server.ensure_database(name)
            urls[name] = (server.url(name), True)
        else:
            urls[name] = (url, False)
    return urls


def urls(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """name → URL of every configured database (see :func:`database_urls`)."""
    return {name: url for name, (url, _) in database_urls(settings, environ).items()}


@dataclass(frozen=True)
class Existing:
    """What a command that only looks can look at, without starting anything."""

    urls: dict[str, str]  # name → URL
    # Databases of the embedded server that are not there to look at: the server is not
    # running, or has not created them yet. Nothing of shoal's can be live in them.
    absent: tuple[str, ...]
    embedded_running: bool


def existing_urls(settings: Settings, environ: Mapping[str, str] | None = None) -> Existing:
    """Like :func:`urls`, but the embedded server is neither started nor written to.

    For ``shoal ps``, ``shoal locks`` and ``shoal pool status``: starting a server (seconds,
    and a data directory on first use) only to report that it holds nothing would be a
    poor answer to a question.
    """
    environ = os.environ if environ is None else environ
    server: EmbeddedServer | None = None
    found: dict[str, str] = {}
    absent: list[str] = []
    for name in settings.databases:
        url = resolve_url(settings, name, environ)
        if url is not None:
            found[name] = url
            continue
        server = server or EmbeddedServer(settings.home)
        if not server.listening():
            absent.append(name)
            continue
        try:
            there = server.has_database(name)
        except psycopg.Error:
            there = True  # it runs but did not answer: the command reports it as unreadable
        if there:
            found[name] = server.url(name)
        else:
            absent.append(name)
    running = server is not None and server.listening()
    return Existing(urls=found, absent=tuple(absent), embedded_running=running)


def resolve_targets(settings: Settings, environ: Mapping[str, str] | None = None) -> list[Target]:
    """Resolve every database, checking each server answers within the connect timeout."""
    hooks = parse_hooks(settings)
    controls: dict[str, str] = {}
    targets = []
    for name, (url, embedded) in database_urls(settings, environ).items():
        database = settings.databases[name]
        key = f"databases.{name}.url"
        try:
            admin_connect(url, "shoal_probe", timeout=settings.connect_timeout).close()
        except ServerUnreachable as exc:
            raise UsageError(key, conninfo.mask(url), settings.source_of(key), str(exc)) from None
        cluster = conninfo.cluster_key(url)
        if cluster not in controls:
            controls[cluster] = control_url(url, settings.connect_timeout)
        targets.append(
            Target(
                name=name,
                url=url,
                control_url=controls[cluster],
                setup=hooks[name],
                extensions=database.extensions,
                export_env=database.export_env,
                embedded=embedded,
            )
        )
    return targets
