"""``shoal serve`` flags and settings: sources, precedence, errors naming the field, secrets."""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from shoal.errors import ConfigError
from shoal.service.models import JobStatus
from shoal.service.runner import render_argv
from shoal.service.settings import load_serve_settings
from shoal.service.store import Job, SqliteStore


@pytest.fixture
def shoal() -> Iterator[click.Group]:
    # Until serve is registered in shoal.cli, add it to the real group (with its error boundary).
    from shoal.cli import cli
    from shoal.cli.serve import serve_command

    registered = "serve" in cli.commands
    cli.add_command(serve_command)
    yield cli
    if not registered:
        cli.commands.pop("serve")


def invoke(shoal: click.Group, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(shoal, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def test_refuses_to_start_without_a_token(shoal: click.Group, origin: Path) -> None:
    code, out = invoke(shoal, "serve", "--repo", str(origin), "--agent", "a=echo {prompt}")
    assert code == 2
    assert "token" in out
    assert "SHOAL_SERVE_TOKEN" in out


def test_no_auth_only_on_loopback(shoal: click.Group, origin: Path) -> None:
    code, out = invoke(
        shoal, "serve", "--repo", str(origin), "--agent", "a=echo", "--no-auth", "--host", "0.0.0.0"
    )
    assert code == 2
    assert "no_auth" in out
    assert "loopback" in out


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (
            ["--max-concurrency", "0"],
            {},
            "max_concurrency = 0 (from command line --max-concurrency)",
        ),
        (
            [],
            {"SHOAL_SERVE_MAX_CONCURRENCY": "lots"},
            "max_concurrency = 'lots' (from environment SHOAL_SERVE_MAX_CONCURRENCY)",
        ),
        (["--port", "70000"], {}, "port = 70000 (from command line --port)"),
        (["--default-agent", "zz"], {}, "default_agent = 'zz'"),
        (["--repo", "/no/such/repo"], {}, "repo = '/no/such/repo'"),
        (["--agent", "broken"], {}, "expected NAME=COMMAND"),
        (["--agent", "b=unbalanced 'quote"], {}, "cannot split"),
        (
            [],
            {"SHOAL_SERVE_AGENTS": "a=echo"},
            "agents = 'a=echo' (from environment SHOAL_SERVE_AGENTS): expected JSON",
        ),
        (["--cors-origin", "ftp://x"], {}, "cors_origins = ('ftp://x',) (from command line"),
        ([], {"SHOAL_SERVE_CORS_ORIGINS": "https://a.example,nope"}, "'nope': expected an origin"),
        (
            ["--queue", "redis://u:hunter2@q/0"],
            {},
            "queue = 'redis://u:***@q/0' (from command line --queue): expected a postgresql://",
        ),
        (
            [],
            {"SHOAL_SERVE_QUEUE": "sqlite:///x"},
            "queue = 'sqlite:///x' (from environment SHOAL_SERVE_QUEUE): expected a postgresql://",
        ),
        (
            ["--queue", "postgresql://q/x", "--queue-schema", "public"],
            {},
            "queue_schema = 'public'",
        ),
        (
            ["--queue", "postgresql://q/x", "--heartbeat", "5", "--node-timeout", "6"],
            {},
            "node_timeout_s = 6.0 (from command line --node-timeout): expected at least twice",
        ),
    ],
)
def test_bad_settings_exit_2_naming_the_field_and_source(
    shoal: click.Group, origin: Path, args: list[str], env: dict[str, str], expected: str
) -> None:
    base = ["serve", "--repo", str(origin), "--agent", "a=echo", "--no-auth"]
    code, out = invoke(shoal, *base, *args, env=env)
    assert code == 2
    assert expected in out
    assert "Traceback" not in out


def test_an_unreachable_queue_is_one_line_naming_the_option(
    shoal: click.Group, origin: Path, tmp_path: Path
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://shoal:hunter2@127.0.0.1:{port}/queue"
    base = ["serve", "--repo", str(origin), "--agent", "a=echo", "--no-auth"]
    code, out = invoke(shoal, *base, "--state-dir", str(tmp_path / "s"), "--queue", url)
    assert code == 2
    assert out.startswith(
        f"Error: queue = 'postgresql://shoal:***@127.0.0.1:{port}/queue' "
        "(from --queue or SHOAL_SERVE_QUEUE): cannot connect to"
    )
    assert "expected the URL of a reachable PostgreSQL database" in out
    assert len(out.strip().splitlines()) == 1
    assert "hunter2" not in out
    assert "Traceback" not in out


def test_missing_repo_and_agents_are_named(shoal: click.Group) -> None:
    code, out = invoke(shoal, "serve", "--no-auth")
    assert code == 2
    assert "repo = None (from default): required: give --repo or set SHOAL_SERVE_REPO" in out
    assert "agents = None (from default): required: give --agent or set SHOAL_SERVE_AGENTS" in out


def test_secrets_are_masked(shoal: click.Group, tmp_path: Path) -> None:
    repo = "https://someone:hunter2@127.0.0.1:9/nothing.git"
    code, out = invoke(
        shoal,
        "serve",
        "--repo",
        repo,
        "--agent",
        "a=echo",
        "--state-dir",
        str(tmp_path),
        "--port",
        "99999",
        env={"SHOAL_SERVE_TOKEN": "sekrit-value"},
    )
    assert code == 2
    assert "port" in out
    code, out = invoke(
        shoal,
        "serve",
        "--repo",
        repo,
        "--agent",
        "a=echo",
        "--state-dir",
        str(tmp_path),
        env={"SHOAL_SERVE_TOKEN": "sekrit-value"},
    )
    assert code == 2
    assert "***" in out
    assert "hunter2" not in out
    assert "sekrit" not in out


def test_flags_beat_environment_beat_defaults(
    origin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flags = {"repo": str(origin), "agents": {"a": "echo {prompt}"}, "no_auth": True}
    assert load_serve_settings(flags).max_concurrency == 10
    monkeypatch.setenv("SHOAL_SERVE_MAX_CONCURRENCY", "3")
    monkeypatch.setenv("SHOAL_SERVE_AGENTS", json.dumps({"env-agent": ["tool", "--quiet"]}))
    from_env = load_serve_settings({"repo": str(origin), "no_auth": True})
    assert from_env.max_concurrency == 3
    assert from_env.agents == {"env-agent": ("tool", "--quiet")}
    assert on_stdin(from_env.agents["env-agent"])
    from_flags = load_serve_settings({**flags, "max_concurrency": 5})
    assert from_flags.max_concurrency == 5
    assert from_flags.agents == {"a": ("echo", "{prompt}")}
    assert not on_stdin(from_flags.agents["a"])


def on_stdin(template: tuple[str, ...]) -> bool:
    return render_argv(template, prompt="p", model="m", job_id="j")[1]


def test_token_is_never_shown(origin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_SERVE_TOKEN", "sekrit-value")
    settings = load_serve_settings({"repo": str(origin), "agents": {"a": "echo"}})
    assert "sekrit" not in repr(settings)
    assert "sekrit" not in str(settings.model_dump())
    with pytest.raises(ConfigError) as error:
        load_serve_settings({"repo": str(origin), "agents": {"a": "echo"}, "token": ["x"]})
    assert "token = '***'" in str(error.value)


def test_store_evicts_only_finished_jobs_past_ttl(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "jobs.sqlite3")
    now = time.time()

    def add(job_id: str, status: JobStatus, finished_at: float | None) -> None:
        store.add(
            Job(
                id=job_id,
                kind="execute",
                status=status,
                prompt="p",
                agent="a",
                model=None,
                ref=None,
                timeout_s=1,
                metadata=None,
                save_branch=False,
                queued_at=now - 100_000,
                finished_at=finished_at,
            )
        )

    add("old", JobStatus.completed, now - 99_999)
    add("old-failed", JobStatus.failed, now - 99_999)
    add("fresh", JobStatus.completed, now)
    add("running", JobStatus.running, None)
    add("queued", JobStatus.queued, None)
    assert store.evict(now - 3600) == 2
    assert [job.id for job in store.list()] == ["fresh", "running", "queued"]
    store.close()
    reopened = SqliteStore(tmp_path / "jobs.sqlite3")
    assert [job.id for job in reopened.list(JobStatus.queued)] == ["queued"]
    reopened.close()


def test_store_lists_every_job_unless_asked_for_a_page(tmp_path: Path) -> None:
    # Restart recovery lists every running and queued job: a cap would strand the rest.
    store = SqliteStore(tmp_path / "jobs.sqlite3")
    for n in range(1_205):
        store.add(
            Job(
                id=f"j{n}",
                kind="execute",
                status=JobStatus.queued,
                prompt="p",
                agent="a",
                model=None,
                ref=None,
                timeout_s=1,
                metadata=None,
                save_branch=False,
                queued_at=time.time(),
            )
        )
    everything = store.list(JobStatus.queued)
    assert len(everything) == 1_205
    page = store.list(JobStatus.queued, after_seq=everything[99].seq, limit=10)
    assert [job.id for job in page] == [f"j{n}" for n in range(100, 110)]
    store.close()


def test_a_job_database_of_the_first_release_gains_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(
            "CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,"
            " kind TEXT NOT NULL, status TEXT NOT NULL, prompt TEXT NOT NULL, agent TEXT NOT NULL,"
            " model TEXT, ref TEXT, timeout_s REAL NOT NULL, metadata TEXT,"
            " save_branch INTEGER NOT NULL, exit_code INTEGER, output TEXT NOT NULL DEFAULT '',"
            " output_truncated INTEGER NOT NULL DEFAULT 0, stderr TEXT NOT NULL DEFAULT '',"
            " error TEXT, queued_at REAL NOT NULL, started_at REAL, finished_at REAL,"
            " workspace TEXT, pid INTEGER, pid_started REAL, diff TEXT, branch TEXT)"
        )
        db.execute(
            "INSERT INTO jobs (id, kind, status, prompt, agent, timeout_s, save_branch, queued_at)"
            " VALUES ('old', 'execute', 'queued', 'p', 'a', 1, 0, 1)"
        )
        db.commit()
    store = SqliteStore(path)
    old = store.get("old")
    assert old is not None
    assert (old.idem_key, old.messages) == (None, None)
    store.add(
        Job(
            id="new",
            kind="chat",
            status=JobStatus.queued,
            prompt="p",
            agent="a",
            model=None,
            ref=None,
            timeout_s=1,
            metadata=None,
            save_branch=False,
            queued_at=time.time(),
            idem_key="chat:k",
            request_hash="h",
            messages=[{"role": "user", "content": "p"}],
        )
    )
    found = store.by_key("chat:k")
    assert found is not None
    assert found.messages == [{"role": "user", "content": "p"}]
    assert [job.id for job in store.list(JobStatus.queued)] == ["old", "new"]
    store.close()
