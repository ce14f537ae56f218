"""``shoal serve``: the agent job service (needs ``pip install shoal[serve]``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from shoal.conninfo import mask
from shoal.errors import UsageError
from shoal.service.settings import TOKEN_ENV, load_serve_settings


def _agents(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str] | None:
    agents: dict[str, str] = {}
    for value in values:
        name, sep, template = value.partition("=")
        if not sep or not name.strip() or not template.strip():
            raise click.BadParameter(f"{value!r}: expected NAME=COMMAND, e.g. 'claude=claude -p'")
        agents[name.strip()] = template
    return agents or None


@click.command("serve")
@click.option("--repo", help="Repository path or URL the jobs check out.  [env SHOAL_SERVE_REPO]")
@click.option(
    "--agent",
    "agents",
    multiple=True,
    callback=_agents,
    metavar="NAME=COMMAND",
    help="An agent: its command line, run without a shell; '{prompt}' in an argument passes "
    "the prompt there, otherwise it goes on stdin. Repeatable.  [env SHOAL_SERVE_AGENTS]",
)
@click.option("--default-agent", help="Agent for requests that name none (default: the first).")
@click.option("--prepare", help="Command run in each fresh checkout before the agent.")
@click.option(
    "--home-template", type=click.Path(path_type=Path), help="Copied into each job's HOME."
)
@click.option("--max-concurrency", type=int, help="Jobs running at once (default 10).")
@click.option("--max-queue-depth", type=int, help="Running + queued jobs before 429 (default 100).")
@click.option(
    "--job-ttl",
    "job_ttl_seconds",
    type=float,
    metavar="SECONDS",
    help="Forget finished jobs after this long (default 86400).",
)
@click.option(
    "--timeout",
    "default_timeout_s",
    type=float,
    metavar="SECONDS",
    help="A job's run time limit when the request gives none (default 3600).",
)
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 8765).")
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    help="Job database, base clone and workspaces (default .shoal/serve).",
)
@click.option(
    "--no-auth",
    is_flag=True,
    default=None,
    help=f"Serve without {TOKEN_ENV} (only on a loopback address).",
)
@click.option(
    "--shutdown-grace",
    "shutdown_grace_s",
    type=float,
    metavar="SECONDS",
    help="On SIGTERM, running jobs get this long before they are interrupted (default 30).",
)
@click.option(
    "--max-body-bytes", type=int, help="Larger request bodies answer 413 (default 1 MiB)."
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    callback=lambda ctx, param, values: tuple(values) or None,
    help="A browser origin allowed to call the API (default: none). Repeatable.",
)
@click.option(
    "--queue",
    metavar="URL",
    help="postgresql:// URL of a job queue shared by several nodes: every node pointing at "
    "the same database is one service (default: SQLite in the state directory, this host "
    "alone).  [env SHOAL_SERVE_QUEUE]",
)
@click.option(
    "--queue-schema", help="With --queue: the schema of the queue's tables (default shoal_serve)."
)
@click.option("--node-name", help="This node's name in the fleet (default: the host name).")
@click.option(
    "--heartbeat",
    "heartbeat_s",
    type=float,
    metavar="SECONDS",
    help="With --queue: how often this node says it is alive (default 2).",
)
@click.option(
    "--node-timeout",
    "node_timeout_s",
    type=float,
    metavar="SECONDS",
    help="With --queue: a node silent this long is dead, its running jobs are interrupted "
    "(default 15).",
)
def serve_command(**flags: Any) -> None:
    """Run coding-agent jobs over HTTP, each in its own git checkout, FIFO-queued.

    Clients send 'Authorization: Bearer <token>' with the token set in SHOAL_SERVE_TOKEN.
    """
    try:
        from shoal.service.app import create_app
        from shoal.service.server import run
    except ImportError as exc:
        raise UsageError("serve", exc.name, "installation", "pip install 'shoal[serve]'") from None
    from shoal.service.jobs import make_state_dir, node_id, open_store
    from shoal.service.pgstore import QueueUnreachable
    from shoal.service.workspaces import WorkspaceError, Workspaces

    settings = load_serve_settings(flags)
    # Everything the service and git write (the job database, clones, homes) is private
    # to its user, whatever the umask it was started with.
    os.umask(0o077)
    make_state_dir(settings.state_dir)
    # Clone (or fetch) now, so a bad repository is reported as one line, before listening.
    try:
        Workspaces(settings.state_dir, settings.repo).ensure_base()
    except WorkspaceError as exc:
        raise UsageError(
            "repo", mask(settings.repo), "--repo or SHOAL_SERVE_REPO", str(exc)
        ) from None
    queue = "sqlite (this host)"
    if settings.queue is not None:
        # Reach the queue (and create its schema) now: a bad URL is one line, not a traceback.
        try:
            open_store(settings, node_id(settings)).close()
        except QueueUnreachable as exc:
            raise UsageError(
                "queue",
                mask(settings.queue),
                "--queue or SHOAL_SERVE_QUEUE",
                f"{exc}; expected the URL of a reachable PostgreSQL database",
            ) from None
        queue = mask(settings.queue)
    click.echo(
        f"shoal serve: http://{settings.host}:{settings.port}  repo {mask(settings.repo)}  "
        f"queue {queue}  "
        f"agents {', '.join(settings.agents)}  capacity {settings.max_concurrency}  "
        f"auth {'off' if settings.no_auth else 'bearer'}",
        err=True,
    )
    run(create_app(settings), settings)
