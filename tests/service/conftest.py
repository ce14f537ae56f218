"""Fixtures for the job service: a real git repository, the fake agent, an app in-process.

Tests synchronise with agents through files (``touch``/``wait``), never with long sleeps.
Tests marked ``all_queues`` run once per job store: SQLite, and a PostgreSQL queue on the
embedded server and on the external one (``SHOAL_TEST_EXTERNAL_URL``), each in a database
of its own. Tests marked ``stores`` run on SQLite and on a PostgreSQL queue on the embedded
server: the whole HTTP surface on both stores, the queue's own tests on every server.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from fastapi import FastAPI
from psycopg import sql

from shoal.service.app import create_app
from shoal.service.jobs import JobService
from shoal.service.settings import ServeSettings, load_serve_settings
from tests.conftest import EXTERNAL_ENV, Databases, Server

QUEUES = ["sqlite", "embedded", "external"]
STORES = ["sqlite", "embedded"]
# Short, so that the fleet's periodic work is seen within a test's patience.
TEST_HEARTBEAT_S = 0.2
TEST_NODE_TIMEOUT_S = 1.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "all_queues: run on SQLite and on a PostgreSQL queue on each server"
    )
    config.addinivalue_line(
        "markers", "stores: run on SQLite and on a PostgreSQL queue on the embedded server"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "queue_kind" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("all_queues"):
        metafunc.parametrize("queue_kind", QUEUES, indirect=True)
    elif metafunc.definition.get_closest_marker("stores"):
        metafunc.parametrize("queue_kind", STORES, indirect=True)


@pytest.fixture
def queue_kind(request: pytest.FixtureRequest) -> str:
    kind: str = getattr(request, "param", "sqlite")
    return kind


@pytest.fixture(scope="session")
def external_databases() -> Iterator[Databases]:
    url = os.environ.get(EXTERNAL_ENV)
    if not url:
        pytest.skip(f"{EXTERNAL_ENV} is not set")
    made = Databases(Server("external", url))
    yield made
    made.drop_all()


@dataclass(frozen=True)
class Queue:
    url: str
    schema: str


def queue_database(request: pytest.FixtureRequest, kind: str) -> str:
    """The URL of a new database on the ``kind`` server (dropped when the session ends)."""
    fixture = "embedded_databases" if kind == "embedded" else "external_databases"
    databases: Databases = request.getfixturevalue(fixture)
    return databases.server.url(databases.new("serve"))


@pytest.fixture(scope="session")
def queue_databases() -> dict[str, str]:
    """One database per server for this session's queue tests, made when first needed;
    each test has a schema of its own in it."""
    return {}


@pytest.fixture
def queue(
    request: pytest.FixtureRequest, queue_kind: str, queue_databases: dict[str, str]
) -> Iterator[Queue | None]:
    """None for SQLite; otherwise a PostgreSQL queue in a schema of this test's own."""
    if queue_kind == "sqlite":
        yield None
        return
    if queue_kind not in queue_databases:
        queue_databases[queue_kind] = queue_database(request, queue_kind)
    made = Queue(queue_databases[queue_kind], f"shoalt_{secrets.token_hex(4)}_serve")
    yield made
    with psycopg.connect(made.url, autocommit=True, application_name="shoal_tests") as db:
        db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(made.schema)))


FAKE_AGENT = Path(__file__).with_name("fake_agent.py")
TOKEN = "test-token-3f9a"
FINISHED = {"completed", "failed", "timed_out", "cancelled", "interrupted"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_serve_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SHOAL_SERVE_"):
            monkeypatch.delenv(name)


def git(*args: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def make_repo(path: Path, files: dict[str, str] | None = None) -> Path:
    path.mkdir(parents=True)
    git("init", "--quiet", "--initial-branch=main", cwd=path)
    for name, text in (files or {"README.md": "hello\n", "app.py": "x = 1\ny = 2\n"}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git("add", "--all", cwd=path)
    git("commit", "--quiet", "-m", "initial", cwd=path)
    return path


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "origin")
    git("checkout", "--quiet", "-b", "feature", cwd=repo)
    (repo / "feature.txt").write_text("only on feature\n")
    git("add", "--all", cwd=repo)
    git("commit", "--quiet", "-m", "feature", cwd=repo)
    git("checkout", "--quiet", "main", cwd=repo)
    return repo


def agents(tmp_path: Path) -> dict[str, list[str]]:
    python = sys.executable
    dumps = tmp_path / "dumps"
    dumps.mkdir(exist_ok=True)
    return {
        "fake": [python, str(FAKE_AGENT), "{prompt}"],
        "stdin": [python, str(FAKE_AGENT)],
        "dump": [python, str(FAKE_AGENT), "--dump", str(dumps / "{job_id}"), "{prompt}"],
        "dump-stdin": [python, str(FAKE_AGENT), "--dump", str(dumps / "{job_id}")],
        "dump-file": [python, str(FAKE_AGENT), "--dump", str(dumps / "{job_id}"), "@{prompt_file}"],
        # No interpreter to start: for tests where many jobs run at once on two cores.
        "tee": ["tee", "out.txt"],
    }


def settings_for(
    tmp_path: Path, origin: Path, queue: Queue | None = None, **overrides: Any
) -> ServeSettings:
    flags: dict[str, Any] = {
        "repo": str(origin),
        "agents": agents(tmp_path),
        "state_dir": tmp_path / "state",
        "token": TOKEN,
        "max_concurrency": 4,
        "base_refresh_s": 3600,
    }
    if queue is not None:
        flags.update(
            queue=queue.url,
            queue_schema=queue.schema,
            heartbeat_s=TEST_HEARTBEAT_S,
            node_timeout_s=TEST_NODE_TIMEOUT_S,
        )
    flags.update(overrides)
    return load_serve_settings(flags)


class Serve:
    """An app running in-process, with an authenticated httpx client on the ASGI transport."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        transport: httpx.ASGITransport,
        settings: ServeSettings,
        sync: Path,
        app: FastAPI,
    ) -> None:
        self.client = client
        self.transport = transport
        self.settings = settings
        self.sync = sync
        self.app = app

    @property
    def service(self) -> JobService:
        """The job service the app's lifespan started."""
        service: JobService = self.app.state.service
        return service

    def path(self, name: str) -> Path:
        return self.sync / name

    async def submit(self, prompt: str, **fields: Any) -> str:
        response = await self.client.post("/execute", json={"prompt": prompt, **fields})
        assert response.status_code == 202, response.text
        job_id: str = response.json()["job_id"]
        return job_id

    async def job(self, job_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait(
        self, job_id: str, statuses: set[str] | None = None, timeout: float = 20
    ) -> dict[str, Any]:
        wanted = statuses or FINISHED
        deadline = time.monotonic() + timeout
        while True:
            job = await self.job(job_id)
            if job["status"] in wanted:
                return job
            assert time.monotonic() < deadline, f"job {job_id} still {job['status']}: {job}"
            await asyncio.sleep(0.02)

    async def wait_file(self, name: str, timeout: float = 20) -> Path:
        path = self.path(name)
        deadline = time.monotonic() + timeout
        while not path.exists():
            assert time.monotonic() < deadline, f"{path} never appeared"
            await asyncio.sleep(0.01)
        return path


ServeFactory = Callable[..., AbstractAsyncContextManager[Serve]]


@pytest.fixture
def serve(tmp_path: Path, origin: Path, queue: Queue | None) -> ServeFactory:
    """``async with serve(max_concurrency=1) as s:`` — the app with its lifespan running."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Serve]:
        settings = settings_for(tmp_path, origin, queue, **overrides)
        app = create_app(settings)
        sync = tmp_path / "sync"
        sync.mkdir(exist_ok=True)
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=transport, base_url="http://shoal", headers=headers, timeout=30
            ) as client,
        ):
            yield Serve(client, transport, settings, sync, app)

    return start


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


LiveFactory = Callable[..., AbstractContextManager[str]]


@pytest.fixture
def live(tmp_path: Path, origin: Path, queue: Queue | None) -> LiveFactory:
    """``with live(**overrides) as base_url:`` — the app behind a real uvicorn server.

    In a thread of this process: real sockets and HTTP, without a second interpreter
    to start (the subprocess tests in test_server.py cover the command itself).
    """

    @contextmanager
    def start(**overrides: Any) -> Iterator[str]:
        settings = settings_for(tmp_path, origin, queue, **overrides)
        port = free_port()
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=port, log_level="warning"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive(), "the server did not start"
            assert time.monotonic() < deadline, "the server did not start in time"
            time.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(timeout=30)

    return start
