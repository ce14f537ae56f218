"""``shoal pool warm | status | clear``: the warm pool of ready-made worker schemas."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import click
import psycopg
from rich.table import Table

from shoal import conninfo, naming, refill_log
from shoal.cli import render
from shoal.cli.boundary import errors_reported
from shoal.cli.render import absent_note
from shoal.cli.settings import cli_settings, home_option
from shoal.config import POOL_SIZE_MAX, Settings
from shoal.embedded import default_home
from shoal.errors import ShoalError, first_line
from shoal.integrations.django import commands as django_commands
from shoal.integrations.django import warm as django_warm
from shoal.namespace import Namespace, fresh
from shoal.pg import databases, pool
from shoal.pg.connect import admin_connect
from shoal.pg.live import probe_clusters
from shoal.pg.slots import control_url
from shoal.plan import RunPlan, Target
from shoal.refill_log import RefillRecord
from shoal.targets import Existing, build_plan, current_fingerprints, existing_urls
from shoal.targets import urls as configured_urls
from shoal.words import plural

DEFAULT_WARM_TIMEOUT_S = 600.0


@click.group("pool")
@home_option
def pool_group() -> None:
    """The warm pool: schemas built ahead of time, claimed by workers in milliseconds."""


@pool_group.command("warm")
@click.option(
    "--size",
    type=click.IntRange(min=0, max=POOL_SIZE_MAX),
    default=None,
    help="Ready schemas to keep per database (default: the pool_size setting).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=DEFAULT_WARM_TIMEOUT_S,
    show_default=True,
    metavar="SECONDS",
    help="Start no build after this long.",
)
@click.option("--quiet", is_flag=True, help="Print nothing unless something fails.")
@home_option
def warm_command(size: int | None, timeout: float, quiet: bool) -> None:
    """Build ready schemas until every database with a fingerprinted setup has SIZE.

    Safe to run concurrently: one refill per database and fingerprint at a time, the
    others return at once.
    """
    settings = cli_settings()
    wanted = settings.pool_size if size is None else size
    deadline = time.monotonic() + timeout
    namespace = fresh()
    errors: dict[str, str] = {}
    try:
        plan = build_plan(settings, namespace, "", resolve=True, fingerprints=True)
        for target in plan.targets:
            try:
                _warm_one(target, plan, wanted, deadline, quiet)
            except (ShoalError, psycopg.Error) as exc:
                errors[target.name] = first_line(exc)
                click.echo(f"Error: {target.name}: {errors[target.name]}", err=True)
        errors.update(_warm_django(settings, namespace, wanted, deadline, quiet))
    except ShoalError as exc:
        errors["*"] = first_line(exc)
        raise
    finally:
        home = settings.home or default_home()
        log = os.environ.get(naming.ENV_REFILL_LOG)
        record = RefillRecord(refill_log.now(), namespace.token, errors, log)
        refill_log.write(home, settings.project_root, record)
    if errors:
        raise SystemExit(1)


def _warm_one(target: Target, plan: RunPlan, wanted: int, deadline: float, quiet: bool) -> None:
    current = target.fingerprint
    if current is None:
        if not quiet:
            click.echo(f"{target.name}: no setup fingerprint, no pool")
        return
    result = pool.warm(
        target,
        current,
        wanted,
        namespace=plan.namespace,
        tail=plan.tail,
        ddl_slots=plan.ddl_slots,
        timeout=plan.connect_timeout,
        deadline=deadline,
        project=plan.project,
    )
    if not quiet:
        note = f" ({result.skipped})" if result.skipped else ""
        click.echo(
            f"{target.name}: fingerprint {current[: naming.POOL_FINGERPRINT_CHARS]}, "
            f"built {len(result.built)}, ready {result.ready_after}{note}"
        )


def _warm_django(
    settings: Settings, namespace: Namespace, wanted: int, deadline: float, quiet: bool
) -> dict[str, str]:
    """The project's Django pools (when it has Django settings), built as the background
    refill builds them; ``django:<name>`` → error."""
    try:
        django = django_commands.plan(settings, namespace, wanted)
    except (ShoalError, psycopg.Error) as exc:
        click.echo(f"Error: django: {first_line(exc)}", err=True)
        return {"django": first_line(exc)}
    if django is None:
        return {}
    left = max(0.0, deadline - time.monotonic())
    errors = django_warm.warm(django, wanted, timeout=left, quiet=quiet)
    return {naming.django_listing_name(name): error for name, error in errors.items()}


def _status(settings: Settings, existing: Existing) -> list[dict[str, Any]]:
    fingerprints = current_fingerprints(settings) or {}
    last = refill_log.read(settings.home or default_home(), settings.project_root)
    errors = last.errors if last is not None else {}
    rows = []
    # The Django test databases shoal has put pools in for this project.
    django = django_commands.databases(settings, existing.urls)
    if django:
        fingerprints = {**fingerprints, **django_commands.current_fingerprints(settings)}
    for name, url in {**existing.urls, **django}.items():
        current = fingerprints.get(name)
        label = naming.tool_label("pool")
        with admin_connect(url, label, timeout=settings.connect_timeout) as conn:
            entries = pool.list_pool(conn, name)
        ready = [e for e in entries if e.state == "ready"]
        rows.append(
            {
                "database": name,
                "fingerprint": current,
                "pool_size": settings.pool_size if current else 0,
                "ready": sum(1 for e in ready if e.fingerprint == current),
                "stale": sum(1 for e in ready if e.fingerprint != current),
                "building": sum(1 for e in entries if e.state == "building"),
                "other": sum(1 for e in entries if e.state not in ("ready", "building")),
                "last_refill_error": errors.get(name, errors.get("*")),
                "by_fingerprint": [
                    {**c.as_json(), "current": bool(current and current.startswith(c.fingerprint))}
                    for c in pool.counts(entries)
                ],
            }
        )
    return rows


@pool_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@home_option
def status_command(as_json: bool) -> None:
    """Ready, stale and half-built pool schemas per configured database."""
    settings = cli_settings()
    existing = existing_urls(settings)
    rows = _status(settings, existing)
    if as_json:
        click.echo(json.dumps({"databases": rows, "not_looked_at": existing.absent}, indent=2))
        return
    note = absent_note(existing)
    if note:
        click.echo(note)
    columns = ("Database", "Fingerprint", "Ready", "pool_size", "Stale", "Building", "Other")
    table = Table(*columns, "Last refill")
    for row in rows:
        fp = row["fingerprint"]
        table.add_row(
            row["database"],
            fp[: naming.POOL_FINGERPRINT_CHARS] if fp else "none (no pool)",
            *(str(row[k]) for k in ("ready", "pool_size", "stale", "building", "other")),
            f"failed: {row['last_refill_error']}" if row["last_refill_error"] else "ok",
        )
    console = render.console()
    console.print(table)
    by_fingerprint = Table("Database", "Fingerprint", "Ready", "Building", "Dropping", "Current")
    for row in rows:
        for count in row["by_fingerprint"]:
            by_fingerprint.add_row(
                row["database"],
                count["fingerprint"],
                *(str(count[k]) for k in ("ready", "building", "dropping")),
                "yes" if count["current"] else "no",
            )
    if by_fingerprint.rows:
        console.print(by_fingerprint)
    if last_log := _last_log(settings):
        console.print(f"last refill's log: {last_log}")


def _last_log(settings: Settings) -> str | None:
    last = refill_log.read(settings.home or default_home(), settings.project_root)
    return last.log if last is not None and last.failed else None


@pool_group.command("clear")
@home_option
def clear_command() -> None:
    """Drop every ready pool schema, and half-built ones whose builder is gone.

    A build still under way (its run is live) is left alone; so is everything whose
    builder's liveness cannot be told. Exit status 1 when something was left.
    """
    settings = cli_settings()
    urls = configured_urls(settings)
    urls = {**urls, **django_commands.databases(settings, urls)}
    clusters = probe_clusters(list(urls.values()), settings.connect_timeout)
    complete = all(c.reachable for c in clusters)
    live = set().union(*(c.live for c in clusters)) if clusters else set()
    namespace = fresh().token
    left = 0
    for name, url in urls.items():
        dropped, kept = pool.clear(
            url,
            control_url(url, settings.connect_timeout),
            name,
            namespace=namespace,
            live=live,
            complete=complete,
            ddl_slots=settings.ddl_slots,
            timeout=settings.connect_timeout,
            project=settings.project,
        )
        left += kept
        left_note = f", left {kept}" if kept else ""
        click.echo(f"{name}: dropped {plural(dropped, 'pool schema')}{left_note}")
    # Django's database mode: the project's template databases, once per server.
    servers = {conninfo.cluster_key(url): url for url in urls.values()}
    for server, url in servers.items():
        dropped, kept = databases.clear_templates(
            control_url(url, settings.connect_timeout),
            namespace=namespace,
            live=live,
            complete=complete,
            project=settings.project,
            ddl_slots=settings.ddl_slots,
            timeout=settings.connect_timeout,
        )
        left += kept
        if dropped or kept:
            left_note = f", left {kept}" if kept else ""
            click.echo(f"{server}: dropped {plural(dropped, 'template database')}{left_note}")
    raise SystemExit(1 if left else 0)


def main() -> None:
    """``shoal pool`` on its own (see :mod:`shoal.cli.warm`), with the CLI's error boundary."""
    with errors_reported(verbose=False):
        pool_group(prog_name="shoal pool")
