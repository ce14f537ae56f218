"""From settings to a run plan: the edge between what the user wrote and the engine.

URLs are resolved (``env:VAR``, or a database on the embedded server, started when
needed), every server is reached once within the connect timeout and asked what the plan
needs (its version and lock capacity), every setup is parsed and fingerprinted, and the
extensions and the search-path tail are checked. :mod:`shoal.pg` gets plain
:class:`~shoal.plan.Target` objects and never sees the settings or the embedded server.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shoal import conninfo, naming, setups
from shoal.config import Settings
from shoal.errors import ExtensionUnavailable, ServerUnreachable, UsageError
from shoal.namespace import Namespace
from shoal.plan import RunPlan, Target
from shoal.setups import Setup

# psycopg, the engine (shoal.pg) and the embedded server are imported where a server is
# reached: a run that configures no database (every pytest of a project that has shoal
# installed and does not use it) plans without them, some tens of milliseconds less.
if TYPE_CHECKING:
    import psycopg

    from shoal.embedded import EmbeddedServer

SERVER_VERSION = "SELECT current_setting('server_version_num')::int"


def parse_setups(settings: Settings) -> dict[str, Setup | None]:
    """Every database's setup, imported and checked (no server needed)."""
    parsed: dict[str, Setup | None] = {}
    for name, database in settings.databases.items():
        key = f"databases.{name}.setup"
        parsed[name] = (
            None
            if database.setup is None
            else setups.load(
                database.setup, key=key, source=settings.source_of(key), root=settings.project_root
            )
        )
    return parsed


def current_fingerprints(settings: Settings) -> dict[str, str | None] | None:
    """Database name → the fingerprint of its configured setup (None: no pool).

    None altogether when a setup cannot be imported: the sweep then treats every ready
    pool schema as current rather than guess.
    """
    try:
        parsed = parse_setups(settings)
    except UsageError:
        return None
    return {
        name: setups.fingerprint(
            setup, tail=settings.search_path_tail, extensions=settings.databases[name].extensions
        )
        for name, setup in parsed.items()
    }


def resolve_url(settings: Settings, name: str, environ: Mapping[str, str]) -> str | None:
    """The database's URL as configured (``env:`` resolved), or None for the embedded server."""
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
    """name → (URL as configured, on the embedded server?) for every configured database.

    The embedded server is started and its databases created if needed; other servers
    are not contacted.
    """
    from shoal.embedded import EmbeddedServer

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
    """name → libpq URL of every configured database (see :func:`database_urls`)."""
    return {
        name: conninfo.split_scheme(url)[1]
        for name, (url, _) in database_urls(settings, environ).items()
    }


@dataclass(frozen=True)
class Existing:
    """What a command that only looks can look at, without starting anything."""

    urls: dict[str, str]  # name → libpq URL
    # Databases of the embedded server that are not there to look at: the server is not
    # running, or has not created them yet. Nothing of shoal's can be live in them.
    absent: tuple[str, ...]
    embedded_running: bool


def existing_urls(settings: Settings, environ: Mapping[str, str] | None = None) -> Existing:
    """Like :func:`urls`, but the embedded server is neither started nor written to.

    For the commands that look (``ps``, ``locks``, ``pool status``, ``sweep --dry-run``):
    starting a server (seconds, and a data directory on first use) only to report that
    it holds nothing would be a poor answer to a question.
    """
    import psycopg

    from shoal.embedded import EmbeddedServer

    environ = os.environ if environ is None else environ
    server: EmbeddedServer | None = None
    found: dict[str, str] = {}
    absent: list[str] = []
    for name in settings.databases:
        url = resolve_url(settings, name, environ)
        if url is not None:
            found[name] = conninfo.split_scheme(url)[1]
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


def resolve_targets(
    settings: Settings,
    environ: Mapping[str, str] | None = None,
    *,
    fingerprints: bool | None = None,
) -> list[Target]:
    """Every configured database, reached once and described for the plan.

    ``fingerprints`` (default: when the pool is on) computes each setup's fingerprint:
    rendering a large metadata's DDL takes a few hundred milliseconds.
    """
    from shoal.pg import pool
    from shoal.pg.connect import admin_connect
    from shoal.pg.slots import control_url

    fingerprinted = settings.pool_size > 0 if fingerprints is None else fingerprints
    parsed = parse_setups(settings)
    controls: dict[str, str] = {}
    targets = []
    for name, (raw, embedded) in database_urls(settings, environ).items():
        database = settings.databases[name]
        scheme, url = conninfo.split_scheme(raw)
        key = f"databases.{name}.url"
        setup = parsed[name]
        fingerprint = (
            setups.fingerprint(
                setup, tail=settings.search_path_tail, extensions=database.extensions
            )
            if fingerprinted
            else None
        )
        try:
            with admin_connect(
                url, naming.tool_label("probe"), timeout=settings.connect_timeout
            ) as conn:
                version, capacity = probe(conn)
                # What the last recorded build of this setup measured: the DDL slots
                # are sized by it (a small schema need not queue behind a large one's).
                footprint = pool.recorded_footprint(conn, fingerprint) if fingerprint else None
        except ServerUnreachable as exc:
            raise UsageError(key, conninfo.mask(raw), settings.source_of(key), str(exc)) from None
        cluster = conninfo.cluster_key(url)
        if cluster not in controls:
            controls[cluster] = control_url(url, settings.connect_timeout)
        targets.append(
            Target(
                name=name,
                url=url,
                control_url=controls[cluster],
                setup=setup,
                extensions=database.extensions,
                export_env=database.export_env,
                embedded=embedded,
                scheme=scheme,
                fingerprint=fingerprint,
                server_version=version,
                lock_capacity=capacity,
                lock_footprint=footprint,
            )
        )
    return targets


def probe(conn: psycopg.Connection[tuple[object, ...]]) -> tuple[int, int]:
    """The server's version number and lock table capacity."""
    from shoal.pg.slots import lock_settings

    row = conn.execute(SERVER_VERSION).fetchone()
    version = int(str(row[0])) if row else 0
    return version, lock_settings(conn).capacity


def check(targets: list[Target], configured_tail: tuple[str, ...], timeout: int) -> tuple[str, ...]:
    """Extensions created, tail verified: the tail every worker's search path ends with."""
    from shoal.pg import schemas

    return schemas.check_databases(
        [(t.name, t.url, t.extensions) for t in targets], configured_tail, timeout
    )


def build_plan(
    settings: Settings,
    namespace: Namespace,
    owner: str,
    *,
    resolve: bool | None = None,
    fingerprints: bool | None = None,
) -> RunPlan:
    """The plan of one run. ``resolve`` (default: when the project configures databases)
    reaches every server and checks it now; otherwise the targets are left to the first
    test that asks for a database."""
    configured = settings.source_of("databases") != "default"
    targets: list[Target] = []
    tail = settings.search_path_tail
    if configured if resolve is None else resolve:
        targets = resolve_targets(settings, fingerprints=fingerprints)
        try:
            tail = check(targets, settings.search_path_tail, settings.connect_timeout)
        except ExtensionUnavailable as exc:
            key = f"databases.{exc.database}.extensions"
            raise UsageError(
                key,
                exc.extension,
                settings.source_of(key),
                f"PostgreSQL cannot create it ({exc.reason}); the server lists the ones it "
                "has in pg_available_extensions",
            ) from None
    return plan_from(settings, namespace, owner, targets, tail, configured=configured)


def plan_from(
    settings: Settings,
    namespace: Namespace,
    owner: str,
    targets: list[Target],
    tail: tuple[str, ...],
    *,
    configured: bool,
) -> RunPlan:
    return RunPlan(
        namespace=namespace.token,
        origin=namespace.origin,
        owner=owner,
        project_root=str(settings.project_root),
        configured=configured,
        targets=tuple(targets),
        tail=tail,
        configured_tail=settings.search_path_tail,
        ddl_slots=settings.ddl_slots,
        connect_timeout=settings.connect_timeout,
        pool_size=settings.pool_size,
        keep_on_failure=settings.keep_on_failure,
        home=None if settings.home is None else str(settings.home),
        project=settings.project,
        reports_dir=str(settings.resolve_path(settings.reports_dir)),
        sources=settings.sources(),
    )


def embedded_default(plan: RunPlan) -> tuple[list[Target], tuple[str, ...]]:
    """The targets of a run that configures no database: ``default`` on the embedded
    server, resolved by the first process that needs it."""
    from pathlib import Path

    from shoal.config import DEFAULT_DATABASE
    from shoal.embedded import EmbeddedServer
    from shoal.pg.connect import admin_connect

    server = EmbeddedServer(None if plan.home is None else Path(plan.home))
    server.ensure_running()
    server.ensure_database(DEFAULT_DATABASE)
    url = server.url(DEFAULT_DATABASE)
    with admin_connect(url, naming.tool_label("probe"), timeout=plan.connect_timeout) as conn:
        version, capacity = probe(conn)
    target = Target(
        name=DEFAULT_DATABASE,
        url=url,
        control_url=server.url(),
        embedded=True,
        server_version=version,
        lock_capacity=capacity,
    )
    return [target], check([target], plan.configured_tail, plan.connect_timeout)
