"""A real ``shoal serve`` (uvicorn in a subprocess): kill -9, events, private state, SIGTERM."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.service.conftest import TOKEN, agents

# Registers serve on the real group, so this works before and after shoal.cli lists it.
_MAIN = (
    "from shoal.cli import cli, main; from shoal.cli.serve import serve_command; "
    "cli.add_command(serve_command); main()"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until(check: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class Server:
    def __init__(self, tmp_path: Path, origin: Path) -> None:
        self.port = free_port()
        self.state = tmp_path / "state"
        self.log = tmp_path / "server.log"
        self.args = [
            "serve",
            "--repo",
            str(origin),
            "--state-dir",
            str(self.state),
            "--port",
            str(self.port),
            "--max-concurrency",
            "1",
        ]
        for name, argv in agents(tmp_path).items():
            self.args += ["--agent", f"{name}={subprocess.list2cmdline(argv)}"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}",
            timeout=30,
            headers={"Authorization": f"Bearer {TOKEN}"},
        )

    def start(self, *extra: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_SERVE_")}
        env["SHOAL_SERVE_TOKEN"] = TOKEN
        with open(self.log, "ab") as log:
            # The umask most shells have: the service must not depend on a stricter one.
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _MAIN, *self.args, *extra],
                env=env,
                stdout=log,
                stderr=log,
                umask=0o022,
            )
        wait_until(self._healthy, f"the server to answer (log: {self.log})")

    def _healthy(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, self.log.read_text()
        try:
            return self.client.get("/health").status_code == 200
        except httpx.TransportError:
            return False

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)

    def job(self, job_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.client.get(f"/jobs/{job_id}").json()
        return body

    def wait(self, job_id: str) -> dict[str, Any]:
        wait_until(lambda: self.job(job_id)["status"] not in ("queued", "running"), job_id)
        return self.job(job_id)

    def submit(self, prompt: str) -> str:
        response = self.client.post("/execute", json={"prompt": prompt})
        assert response.status_code == 202, response.text
        job_id: str = response.json()["job_id"]
        return job_id


def stored_output(state: Path, job_id: str) -> str:
    """The output the job store holds for ``job_id``, read as another process would."""
    with contextlib.closing(sqlite3.connect(state / "jobs.sqlite3")) as db:
        row = db.execute("SELECT output FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return "" if row is None else str(row[0])


@pytest.fixture
def server(tmp_path: Path, origin: Path) -> Iterator[Server]:
    made = Server(tmp_path, origin)
    yield made
    made.kill(signal.SIGTERM)
    made.client.close()


def test_kill_9_during_a_run_then_restart(server: Server, tmp_path: Path) -> None:
    sync = tmp_path / "sync"
    sync.mkdir()
    order = sync / "order"
    server.start()
    running = server.submit(
        f"print before the crash\npid {sync / 'pid'}\nchild {sync / 'child'}\n"
        f"touch {sync / 'a'}\nwait {sync / 'never'}"
    )
    wait_until((sync / "a").exists, "the first job to start")
    # Its output reaches the job store within a checkpoint, while it still runs.
    wait_until(lambda: "before the crash" in stored_output(server.state, running), "a checkpoint")
    queued = [server.submit(f"append {order} {name}") for name in ("B", "C", "D")]
    assert [server.job(j)["status"] for j in queued] == ["queued"] * 3
    workspace = Path(server.job(running)["workspace"])
    assert workspace.is_dir()

    server.kill(signal.SIGKILL)
    server.start()

    job = server.job(running)
    assert job["status"] == "interrupted"
    assert job["output"] == "before the crash\n"  # kept across the crash
    assert job["finished_at"] is not None
    assert not workspace.exists()
    assert gone(int((sync / "pid").read_text()))
    assert gone(int((sync / "child").read_text()))
    finished = [server.wait(j) for j in queued]
    assert [j["status"] for j in finished] == ["completed"] * 3
    assert order.read_text() == "B\nC\nD\n"
    for earlier, later in itertools.pairwise(finished):
        assert earlier["finished_at"] <= later["started_at"]
    assert list((server.state / "jobs").iterdir()) == []


def test_events_arrive_while_the_job_runs(server: Server, tmp_path: Path) -> None:
    go = tmp_path / "go"
    server.start()
    job_id = server.submit(f"print one\nwait {go}\nprint two")
    seen: list[str] = []
    text = ""
    with server.client.stream("GET", f"/jobs/{job_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            seen.append(line)
            if line.startswith("data: ") and seen[-2:-1] == ["event: output"]:
                text += json.loads(line[6:])
                if text == "one\n":
                    # The job is blocked until this file exists: "one" came while it ran.
                    assert server.job(job_id)["status"] == "running"
                    go.touch()
    assert text == "one\ntwo\n"
    assert [line for line in seen if line][-2:] == [
        "event: end",
        'data: {"status": "completed", "exit_code": 0}',
    ]


def stored(state: Path, job_id: str) -> tuple[str, str | None]:
    with contextlib.closing(sqlite3.connect(state / "jobs.sqlite3")) as db:
        row = db.execute("SELECT status, error FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return str(row[0]), row[1]


def test_state_is_private_under_umask_022(server: Server, origin: Path) -> None:
    server.start()
    assert server.wait(server.submit("write new.txt hello"))["status"] == "completed"
    # A local clone hardlinks the repository's own objects: they are the repository's
    # files, with its modes, and changing those would change the repository.
    shared = {path.stat().st_ino for path in (origin / ".git" / "objects").rglob("*")}
    exposed = []
    for directory, _, files in os.walk(server.state):  # checkouts may go meanwhile
        for path in [Path(directory), *(Path(directory) / name for name in files)]:
            with contextlib.suppress(FileNotFoundError):
                info = path.lstat()
                if stat.S_ISLNK(info.st_mode) or info.st_ino in shared:
                    continue
                if info.st_mode & 0o077:
                    exposed.append(str(path.relative_to(server.state)))
    assert exposed == []


def test_sigterm_ends_streams_starts_no_queued_job_and_interrupts_after_the_grace(
    server: Server, tmp_path: Path
) -> None:
    sync = tmp_path / "sync"
    sync.mkdir()
    server.start("--shutdown-grace", "2")
    running = server.submit(f"print working\ntouch {sync / 'a'}\nwait {sync / 'never'}")
    wait_until((sync / "a").exists, "the first job to start")
    queued = server.submit(f"touch {sync / 'queued-ran'}")
    seen: dict[str, list[str]] = {"events": [], "chat": []}
    ended: dict[str, float] = {}

    def read(name: str, method: str, url: str, body: Any = None) -> None:
        with server.client.stream(method, url, json=body) as response:
            for line in response.iter_lines():
                seen[name].append(line)
        ended[name] = time.monotonic()

    chat = {"model": "fake", "stream": True, "messages": [{"role": "user", "content": "print x"}]}
    readers = [
        threading.Thread(target=read, args=("events", "GET", f"/jobs/{running}/events")),
        threading.Thread(target=read, args=("chat", "POST", "/v1/chat/completions", chat)),
    ]
    for reader in readers:
        reader.start()
    wait_until(lambda: "event: output" in seen["events"] and seen["chat"], "both streams")
    assert server.proc is not None
    signalled = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    for reader in readers:
        reader.join(timeout=10)
    server.proc.wait(timeout=10)
    exited = time.monotonic() - signalled

    # Streams end at once, each with a last word; the process within grace + 2 s.
    assert max(ended.values()) - signalled < 1.8  # well before the running job's grace
    assert [line for line in seen["events"] if line][-2:] == [
        "event: end",
        'data: {"status": "stopping", "exit_code": null}',
    ]
    assert [line for line in seen["chat"] if line][-1] == "data: [DONE]"
    assert any('"error"' in line for line in seen["chat"])  # interrupted, or stopping
    assert 1.8 < exited < 4.0, exited
    assert stored(server.state, running) == ("interrupted", "the service stopped while the job ran")
    assert stored(server.state, queued) == ("queued", None)
    assert not (sync / "queued-ran").exists()

    # The queued job kept its place: the next start runs it.
    server.start()
    assert server.wait(queued)["status"] == "completed"
    assert server.job(running)["status"] == "interrupted"
