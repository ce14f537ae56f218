"""Private and bounded by default: state permissions, body and prompt limits, CORS, refusals."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.service.conftest import TOKEN, LiveFactory, ServeFactory

# The whole surface on both job stores: SQLite, and PostgreSQL (embedded).
pytestmark = [pytest.mark.anyio, pytest.mark.stores]
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def modes(root: Path) -> dict[str, int]:
    found = {}
    for directory, _, files in os.walk(root):  # tolerates checkouts removed meanwhile
        for path in [Path(directory), *(Path(directory) / name for name in files)]:
            with contextlib.suppress(FileNotFoundError):
                if not path.is_symlink():
                    found[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return found


@pytest.mark.usefixtures("umask_022")
async def test_job_database_and_state_directory_are_private_under_umask_022(
    serve: ServeFactory, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)  # made before, and open to all: the service closes it
    async with serve() as s:
        await s.wait(await s.submit("print x"))
        found = modes(state)
    assert found["."] == 0o700
    for name in ("jobs.sqlite3", "jobs.sqlite3-wal", "jobs.sqlite3-shm"):
        if name in found:
            assert found[name] == 0o600, name


def raw_request(url: str, head: str, body: bytes) -> str:
    """Send a request by hand and read the answer, without sending more of the body."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head.encode() + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer.decode("latin-1")


def test_oversized_bodies_are_refused_before_they_are_read(live: LiveFactory) -> None:
    with live(max_body_bytes=4096) as url:
        # Ten megabytes announced, a few bytes sent: the answer comes without the rest.
        for path in ("/execute", "/v1/chat/completions"):
            head = (
                f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                "Content-Type: application/json\r\nContent-Length: 10485760\r\n\r\n"
            )
            answer = raw_request(url, head, b'{"prompt": "')
            assert answer.startswith("HTTP/1.1 413"), answer
        with httpx.Client(base_url=url, headers=AUTH) as client:

            def chunks() -> Iterator[bytes]:
                yield b'{"prompt": "'
                for _ in range(64):
                    yield b"x" * 1024
                yield b'"}'

            chunked = client.post("/execute", content=chunks())
            assert chunked.status_code == 413
            assert "max_body_bytes" in chunked.json()["detail"]
            v1 = client.post("/v1/chat/completions", content=b"{" + b" " * 8192 + b"}")
            assert v1.status_code == 413
            assert v1.json()["error"]["code"] == "request_too_large"
            assert client.get("/jobs").json()["jobs"] == []


async def test_a_prompt_too_long_for_one_argument_is_refused_or_sent_on_stdin(
    serve: ServeFactory, tmp_path: Path
) -> None:
    prompt = "print " + "y" * 199_994  # 200,000 characters
    async with serve(max_body_bytes=2**20) as s:
        refused = await s.client.post("/execute", json={"prompt": prompt, "agent": "dump"})
        assert refused.status_code == 422
        detail = refused.json()["detail"][0]
        assert detail["loc"] == ["body", "prompt"]
        assert "dump" in detail["msg"]
        assert "argument" in detail["msg"]
        chat = await s.client.post(
            "/v1/chat/completions",
            json={"model": "dump", "messages": [{"role": "user", "content": prompt}]},
        )
        assert chat.status_code == 422
        assert chat.json()["error"]["param"] == "messages"
        delivered = [await s.submit(prompt, agent=name) for name in ("dump-stdin", "dump-file")]
        for job_id in delivered:
            job = await s.wait(job_id)
            assert job["status"] == "completed"
            assert job["diff"]["files_changed"] == 0  # the prompt file is not in the checkout
        jobs = (await s.client.get("/jobs")).json()["jobs"]
        assert [job["job_id"] for job in jobs] == delivered
    for job_id in delivered:
        assert (tmp_path / "dumps" / job_id).read_text() == prompt


async def test_ref_and_model_refuse_a_trailing_newline(serve: ServeFactory) -> None:
    async with serve() as s:
        ref = await s.client.post("/execute", json={"prompt": "x", "ref": "main\n"})
        assert ref.status_code == 422
        assert ref.json()["detail"][0]["loc"] == ["body", "ref"]
        model = await s.client.post(
            "/v1/chat/completions",
            json={"model": "fake\n", "messages": [{"role": "user", "content": "x"}]},
        )
        assert model.status_code == 422
        assert model.json()["error"]["param"] == "model"


async def test_cors_is_off_unless_origins_are_configured(serve: ServeFactory) -> None:
    preflight = {"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"}
    async with serve() as s:
        answer = await s.client.options("/execute", headers=preflight)
        assert "access-control-allow-origin" not in answer.headers
    async with serve(cors_origins=["https://elsewhere.example"]) as s:
        answer = await s.client.options("/execute", headers=preflight)
        assert answer.headers["access-control-allow-origin"] == "https://elsewhere.example"


async def test_a_stopping_service_admits_nothing_and_starts_no_queued_job(
    serve: ServeFactory,
) -> None:
    async with serve(max_concurrency=1, shutdown_grace_s=0.2) as s:
        running = await s.submit(f"touch {s.path('a')}\nsleep 30")
        queued = await s.submit(f"touch {s.path('b')}")
        await s.wait_file("a")
        service = s.service
        service.begin_shutdown()
        refused = await s.client.post("/execute", json={"prompt": "print late"})
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) > 0
        chat = await s.client.post(
            "/v1/chat/completions",
            json={"model": "fake", "messages": [{"role": "user", "content": "x"}]},
        )
        assert chat.status_code == 503
        job = await s.wait(running)
        assert (job["status"], job["error"]) == (
            "interrupted",
            "the service stopped while the job ran",
        )
        assert (await s.job(queued))["status"] == "queued"
        assert not s.path("b").exists()


async def test_an_unknown_query_parameter_is_422_naming_it(serve: ServeFactory) -> None:
    async with serve() as s:
        typo = await s.client.get("/jobs", params={"stauts": "failed"})
        assert typo.status_code == 422
        assert typo.json()["detail"][0]["loc"] == ["query", "stauts"]
        v1 = await s.client.get("/v1/models", params={"x": "1"})
        assert v1.status_code == 422
        assert v1.json()["error"]["param"] == "x"


async def test_an_idempotency_key_outlives_a_restart_and_an_interrupted_job_runs_anew(
    serve: ServeFactory,
) -> None:
    keyed = {"Idempotency-Key": "nightly-7"}
    async with serve(shutdown_grace_s=0) as s:
        done = await s.client.post("/execute", json={"prompt": "print once"}, headers=keyed)
        await s.wait(done.json()["job_id"])
        cut = {"Idempotency-Key": "cut-short"}
        prompt = {"prompt": f"touch {s.path('a')}\nwait {s.path('go')}"}
        first = (await s.client.post("/execute", json=prompt, headers=cut)).json()["job_id"]
        await s.wait_file("a")
        s.service.begin_shutdown()
        assert (await s.wait(first))["status"] == "interrupted"
    s.path("go").touch()
    async with serve() as s:
        again = await s.client.post("/execute", json={"prompt": "print once"}, headers=keyed)
        assert again.json()["job_id"] == done.json()["job_id"]
        assert again.headers["Idempotent-Replayed"] == "true"
        rerun = await s.client.post("/execute", json=prompt, headers=cut)
        assert "Idempotent-Replayed" not in rerun.headers
        assert rerun.json()["job_id"] != first
        assert (await s.wait(rerun.json()["job_id"]))["status"] == "completed"
