"""Settings of ``shoal serve``: one frozen object built at the edge.

Layers, highest first: command-line flags, ``SHOAL_SERVE_*`` environment variables,
defaults. The bearer token is read from the environment only (``SHOAL_SERVE_TOKEN``):
a token on the command line would be visible to every user in ``ps``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from shoal import naming
from shoal.conninfo import is_postgres_url, mask, split_scheme
from shoal.errors import ConfigError, UsageError
from shoal.layers import Layers, environment, environment_source

ENV_PREFIX = "SHOAL_SERVE_"
TOKEN_ENV = ENV_PREFIX + "TOKEN"
PROMPT = "{prompt}"
STDIN_JSON = "{stdin_json}"


def parse_argv(template: object) -> tuple[str, ...]:
    """An argv template from a list, or a string split like a shell would (never run by one)."""
    if isinstance(template, str):
        try:
            parts = shlex.split(template)
        except ValueError as exc:
            raise ValueError(f"cannot split {template!r} into arguments: {exc}") from None
    elif isinstance(template, list | tuple) and all(isinstance(p, str) for p in template):
        parts = list(template)
    else:
        raise ValueError("expected a command line string or a list of strings")
    if not parts:
        raise ValueError("expected a non-empty command")
    return tuple(parts)


class ServeSettings(BaseModel):
    """Everything ``shoal serve`` can be told. Build it with :func:`load_serve_settings`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    repo: str = Field(description="repository path or URL the jobs check out")
    agents: dict[str, tuple[str, ...]] = Field(
        description="agent name → argv template; `{prompt}` in an argument passes the prompt "
        "there, `{prompt_file}` the path of a file holding it, otherwise it goes on stdin (as "
        "JSON with the whole conversation when an argument is `{stdin_json}`); `{model}` and "
        "`{job_id}` are substituted too",
    )
    default_agent: str | None = Field(
        default=None, description="agent for requests that name none (default: the first)"
    )
    prepare: tuple[str, ...] | None = Field(
        default=None, description="command run in each fresh checkout before the agent"
    )
    home_template: Path | None = Field(
        default=None, description="directory copied into each job's private HOME"
    )
    max_concurrency: int = Field(default=10, ge=1, le=1000, description="jobs running at once")
    max_queue_depth: int = Field(
        default=100, ge=1, description="running + queued jobs beyond which /execute answers 429"
    )
    job_ttl_seconds: float = Field(
        default=86400.0, ge=0, description="finished jobs are forgotten after this long"
    )
    default_timeout_s: float = Field(
        default=3600.0, gt=0, description="a job's run time limit when the request gives none"
    )
    max_output_chars: int = Field(
        default=1_000_000, ge=1024, description="output characters kept per job (the tail)"
    )
    base_refresh_s: float = Field(
        default=30.0, ge=0, description="fetch the repository at most this often"
    )
    pool_size: int | None = Field(
        default=None,
        ge=0,
        le=1000,
        description="ready checkouts of the default branch kept warm for new jobs "
        "(default: max_concurrency); 0 turns the pool off",
    )
    pool_max_disk_mb: int = Field(
        default=4096, ge=0, description="the warm pool's checkouts stay under this many MiB"
    )
    checkout_concurrency: int | None = Field(
        default=None, ge=1, le=64, description="checkouts made at once (default: CPU cores)"
    )
    sparse_paths: tuple[str, ...] | None = Field(
        default=None,
        description="directories each checkout holds, comma-separated (git sparse-checkout, "
        "cone mode: top-level files always come along); default: the whole tree",
    )
    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=8765, ge=0, le=65535, description="port to listen on")
    state_dir: Path = Field(
        default=Path(".shoal/serve"), description="job database, base clone and workspaces"
    )
    no_auth: bool = Field(default=False, description="serve without a token (loopback only)")
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="request bodies larger than this answer 413"
    )
    keepalive_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="open streams and waiting chat requests send a "
        "keep-alive this often, so clients and proxies do not time out idle connections",
    )
    reattach_s: float = Field(
        default=60.0,
        ge=0,
        description="a chat job whose caller went away is cancelled after "
        "this long, unless a retry of the same request attaches to it",
    )
    shutdown_grace_s: float = Field(
        default=30.0,
        ge=0,
        description="on SIGTERM, running jobs get this long to finish before they are interrupted",
    )
    cors_origins: tuple[str, ...] = Field(
        default=(),
        description="browser origins allowed to call the API, comma-separated (default: none, "
        "CORS off)",
    )
    token: SecretStr | None = Field(default=None, description=f"bearer token ({TOKEN_ENV})")
    queue: str | None = Field(
        default=None,
        description="postgresql:// URL of the job queue: every node pointing at the same "
        "database is one service (default: SQLite in state_dir, this host alone)",
    )
    queue_schema: str = Field(
        default=naming.SERVE_SCHEMA,
        description="with --queue: the schema holding the queue's tables (never public); "
        "fleets in other schemas of one database are separate services",
    )
    node_name: str | None = Field(
        default=None,
        max_length=40,
        description="this node's name in the fleet, before its port and a random suffix "
        "(default: the host name)",
    )
    heartbeat_s: float = Field(
        default=2.0, gt=0, le=60, description="with --queue: how often this node says it is alive"
    )
    node_timeout_s: float = Field(
        default=15.0,
        gt=0,
        le=3600,
        description="with --queue: a node silent this long is dead; its running jobs become "
        "interrupted, its queued jobs keep their place",
    )

    @field_validator("agents", mode="before")
    @classmethod
    def _agents(cls, value: object) -> object:
        if not isinstance(value, Mapping) or not value:
            raise ValueError("expected at least one NAME=COMMAND agent")
        agents = {}
        for name, template in value.items():
            if not str(name).replace("-", "").replace("_", "").replace(".", "").isalnum():
                raise ValueError(f"agent name {name!r}: use letters, digits, '-', '_', '.'")
            agents[str(name)] = parse_argv(template)
        return agents

    @field_validator("queue")
    @classmethod
    def _queue(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not is_postgres_url(value):
            raise ValueError(
                "expected a postgresql:// URL of the database the nodes share, e.g. "
                "postgresql://shoal@db.internal/shoal (without --queue: SQLite, one host)"
            )
        return split_scheme(value)[1]

    @field_validator("queue_schema")
    @classmethod
    def _queue_schema(cls, value: str) -> str:
        problem = naming.schema_name_problem(value)
        if problem is not None:
            raise ValueError(problem)
        if value in ("public", "pg_catalog", "information_schema") or value.startswith("pg_"):
            raise ValueError("expected a schema of the queue's own, not a shared one")
        return value

    @field_validator("prepare", mode="before")
    @classmethod
    def _prepare(cls, value: object) -> object:
        return None if value is None else parse_argv(value)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _cors_origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            for origin in value:
                if not isinstance(origin, str) or not origin.startswith(("http://", "https://")):
                    raise ValueError(f"{origin!r}: expected an origin such as https://a.example")
        return value

    @field_validator("sparse_paths", mode="before")
    @classmethod
    def _sparse_paths(cls, value: object) -> object:
        if isinstance(value, str) and value.lstrip().startswith("["):
            try:  # a JSON list, as other list settings take it from the environment
                value = json.loads(value)
            except ValueError:
                raise ValueError("expected a JSON list or comma-separated directories") from None
        elif isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list | tuple):
            return value
        for path in value:
            # They reach git as arguments and name directories inside the checkout.
            if not isinstance(path, str) or not path.strip("/") or path.startswith(("-", "/")):
                raise ValueError(f"{path!r}: expected a directory inside the repository")
            if ".." in path.split("/"):
                raise ValueError(f"{path!r}: '..' leaves the repository")
        return tuple(p.strip("/") for p in value) or None

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def agent_for_default(self) -> str:
        return self.default_agent or next(iter(self.agents))


_FLAGS = {
    "agents": "--agent",
    "job_ttl_seconds": "--job-ttl",
    "default_timeout_s": "--timeout",
    "shutdown_grace_s": "--shutdown-grace",
    "cors_origins": "--cors-origin",
    "heartbeat_s": "--heartbeat",
    "node_timeout_s": "--node-timeout",
}


def _flag_name(key: str) -> str:
    return _FLAGS.get(key, "--" + key.replace("_", "-"))


def load_serve_settings(flags: Mapping[str, Any] | None = None) -> ServeSettings:
    """Settings from flags over ``SHOAL_SERVE_*`` over defaults, or ConfigError naming each."""
    layers = Layers()
    layers.add(
        environment(
            ENV_PREFIX,
            ServeSettings,
            os.environ,
            examples={"agents": '{"name": ["tool", "{prompt}"]}'},
        ),
        environment_source(ENV_PREFIX),
    )
    layers.add(flags or {}, lambda key: "command line " + _flag_name(key), whole=True)
    settings = layers.validate(
        ServeSettings,
        known=lambda _loc: list(ServeSettings.model_fields),
        shown=_shown,
        missing=lambda key: f"required: give {_flag_name(key)} or set {ENV_PREFIX}{key.upper()}",
    )
    _check(settings, layers.sources)
    return settings


def _shown(key: str, value: object) -> object:
    """A value as a message may show it: never the token, passwords masked."""
    if key == "token":
        return "***"
    return mask(value) if isinstance(value, str) else value


def _check(settings: ServeSettings, sources: Mapping[str, str]) -> None:
    problems: list[UsageError] = []

    def problem(key: str, value: object, expected: str) -> None:
        problems.append(UsageError(key, value, sources.get(key, "default"), expected))

    if settings.default_agent is not None and settings.default_agent not in settings.agents:
        problem("default_agent", settings.default_agent, f"expected one of {list(settings.agents)}")
    if settings.no_auth and not settings.loopback:
        problem(
            "no_auth",
            True,
            f"serving without a token is allowed on loopback only, not on {settings.host!r}; "
            f"set {TOKEN_ENV} instead",
        )
    if not settings.no_auth and (settings.token is None or not settings.token.get_secret_value()):
        problem(
            "token",
            None,
            f"set {TOKEN_ENV} to a secret clients send as 'Authorization: Bearer <token>' "
            "(or bind to 127.0.0.1 with --no-auth)",
        )
    if settings.queue is not None and settings.node_timeout_s < 2 * settings.heartbeat_s:
        problem(
            "node_timeout_s",
            settings.node_timeout_s,
            f"expected at least twice heartbeat_s ({settings.heartbeat_s:g} s): one late "
            "heartbeat must not make a live node look dead",
        )
    if settings.home_template is not None and not settings.home_template.is_dir():
        problem("home_template", str(settings.home_template), "expected an existing directory")
    local = "://" not in settings.repo and ":" not in settings.repo.split("/")[0]
    if local and not Path(settings.repo).exists():
        problem("repo", settings.repo, "no such directory; expected a git repository or URL")
    if problems:
        raise ConfigError(problems)
