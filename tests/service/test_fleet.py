"""Three real ``shoal serve`` nodes sharing one PostgreSQL queue.

One global FIFO line, each node's own capacity, one global depth limit, cancel through a
node that does not run the job, and ``kill -9`` of a node: its running jobs become
interrupted once its heartbeat expires, the others take the queued jobs, nothing runs twice.
"""

from __future__ import annotations

import collections
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from tests.service.conftest import TOKEN, queue_database
from tests.service.test_server import _MAIN, free_port, gone, wait_until

HEARTBEAT_S = 0.3
NODE_TIMEOUT_S = 1.5
CAPACITY = 2
JOBS = 300
DEPTH = 12
SCHEMA = "shoal_serve"

# The agent: records each start (one line per job id), then does what its stdin says:
# "wait PATH" blocks until PATH exists, "pid PATH" writes its pid. No interpreter to start,
# so 300 jobs stay cheap on two cores.
AGENT = """\
echo "$SHOAL_JOB_ID" >> "$1"
while read -r word path; do
  case "$word" in
    wait) while [ ! -e "$path" ]; do sleep 0.02; done ;;
    pid) echo $$ > "$path" ;;
  esac
done
"""


class Node:
    def __init__(self, tmp_path: Path, name: str, origin: Path, queue: str, starts: Path) -> None:
        self.name = name
        self.port = free_port()
        self.log = tmp_path / f"{name}.log"
        script = tmp_path / "agent.sh"
        script.write_text(AGENT)
        self.args = [
            "serve",
            "--repo",
            str(origin),
            "--state-dir",
            str(tmp_path / name),
            "--port",
            str(self.port),
            "--max-concurrency",
            str(CAPACITY),
            "--max-queue-depth",
            str(DEPTH),
            "--queue",
            queue,
            "--node-name",
            name,
            "--heartbeat",
            str(HEARTBEAT_S),
            "--node-timeout",
            str(NODE_TIMEOUT_S),
            "--agent",
            f"sh={subprocess.list2cmdline(['sh', str(script), str(starts)])}",
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}",
            timeout=30,
            headers={"Authorization": f"Bearer {TOKEN}"},
        )

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_SERVE_")}
        env["SHOAL_SERVE_TOKEN"] = TOKEN
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _MAIN, *self.args], env=env, stdout=log, stderr=log
            )

    def healthy(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, self.log.read_text()
        try:
            return self.client.get("/health").status_code == 200
        except httpx.TransportError:
            return False

    def submit(self, prompt: str) -> httpx.Response:
        return self.client.post("/execute", json={"prompt": prompt})

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self.client.close()


def rows(url: str, query: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as db:
        return db.execute(sql.SQL(query).format(sql.Identifier(SCHEMA))).fetchall()


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    return max(itertools.accumulate(step for _, step in edges), default=0)


@pytest.fixture(params=["embedded", "external"])
def fleet_url(request: pytest.FixtureRequest) -> str:
    return queue_database(request, request.param)


@pytest.fixture
def nodes(tmp_path: Path, origin: Path, fleet_url: str) -> Iterator[list[Node]]:
    starts = tmp_path / "starts"
    made = [Node(tmp_path, name, origin, fleet_url, starts) for name in ("n1", "n2", "n3")]
    for node in made:  # all at once: the schema is created race-free
        node.start()
    try:
        for node in made:
            wait_until(node.healthy, f"node {node.name} to answer (log: {node.log})")
        yield made
    finally:
        for node in made:
            node.stop()


def test_three_nodes_share_one_line(nodes: list[Node], tmp_path: Path, fleet_url: str) -> None:
    starts = tmp_path / "starts"
    submitted: list[str] = []
    refused = collections.Counter[str]()
    # Round-robin over the nodes; at the depth limit, the node says 429 and we come back.
    for index in range(JOBS):
        node = nodes[index % 3]
        while (response := node.submit("x")).status_code == 429:
            assert int(response.headers["Retry-After"]) > 0
            refused[node.name] += 1
            time.sleep(0.02)
        assert response.status_code == 202, response.text
        submitted.append(response.json()["job_id"])
    wait_until(
        lambda: (
            rows(fleet_url, "SELECT count(*) AS n FROM {}.jobs WHERE status = 'completed'")[0]["n"]
            == JOBS
        ),
        "the 300 jobs to complete",
        timeout=120,
    )
    jobs = rows(fleet_url, "SELECT id, seq, claim_seq, node, started_at, finished_at FROM {}.jobs")
    by_seq = sorted(jobs, key=lambda j: j["seq"])
    assert [j["id"] for j in by_seq] == submitted
    claims = [j["claim_seq"] for j in by_seq]
    inversions = sum(1 for a, b in itertools.pairwise(claims) if a > b)
    assert inversions == 0
    per_node = collections.defaultdict(list)
    for job in jobs:
        per_node[job["node"]].append((job["started_at"], job["finished_at"]))
    assert len(per_node) == 3, {node: len(spans) for node, spans in per_node.items()}
    assert all(most_at_once(spans) <= CAPACITY for spans in per_node.values())
    started = collections.Counter(starts.read_text().split())
    assert sorted(started) == sorted(submitted)
    assert set(started.values()) == {1}
    print(
        f"\n{JOBS} jobs: 0 inversions; per node {sorted(len(s) for s in per_node.values())}, "
        f"at most {max(most_at_once(s) for s in per_node.values())} at once; "
        f"429s while full: {dict(refused)}"
    )

    # The depth limit holds across the fleet: 6 running, 6 waiting, then 429 everywhere.
    go = tmp_path / "go"
    blockers = []
    for index in range(DEPTH):
        response = nodes[index % 3].submit(f"pid {tmp_path / f'pid{index}'}\nwait {go}\n")
        assert response.status_code == 202, response.text
        blockers.append(response.json()["job_id"])
    for node in nodes:
        assert node.submit("x").status_code == 429
    wait_until(
        lambda: all(n.client.get("/health").json()["active"] == CAPACITY for n in nodes),
        "every node to fill its slots",
    )
    health = nodes[0].client.get("/health").json()
    assert [n["running"] for n in health["fleet"]["nodes"]] == [CAPACITY] * 3
    assert health["fleet"]["queued"] == DEPTH - 3 * CAPACITY
    running = {j: nodes[0].client.get(f"/jobs/{j}").json() for j in blockers}
    running = {j: v for j, v in running.items() if v["status"] == "running"}
    assert len(running) == 3 * CAPACITY

    # A cancel through a node that does not run the job stops it.
    names = {n.name: n for n in nodes}
    victim, view = next(iter(running.items()))
    runner = next(n for name, n in names.items() if view["node"].startswith(f"{name}-"))
    other = next(n for n in nodes if n is not runner)
    pid = int((tmp_path / f"pid{blockers.index(victim)}").read_text())
    cancelled = other.client.post(f"/jobs/{victim}/cancel").json()
    assert cancelled["status"] == "cancelled"
    wait_until(lambda: gone(pid), "the cancelled agent to exit")

    # kill -9 one node while it runs jobs: they become interrupted once its heartbeat has
    # expired; its share of the line is taken by the others; nothing runs twice.
    dead = nodes[2]
    assert dead.proc is not None
    dead_running = [j for j, v in running.items() if v["node"].startswith("n3-") and j != victim]
    assert dead_running
    dead.proc.send_signal(signal.SIGKILL)
    dead.proc.wait(timeout=10)
    killed_at = time.monotonic()
    view_of = nodes[0].client.get
    wait_until(
        lambda: all(view_of(f"/jobs/{j}").json()["status"] == "interrupted" for j in dead_running),
        "the dead node's jobs to be interrupted",
        timeout=NODE_TIMEOUT_S + 10,
    )
    took = time.monotonic() - killed_at
    assert took <= NODE_TIMEOUT_S + 2, took
    go.touch()
    # Every other job ends where it ran: interrupted on the dead node (also any it claimed
    # between the snapshot above and the kill), completed on the nodes alive.
    rest = [j for j in blockers if j != victim]
    ended = lambda: {j: view_of(f"/jobs/{j}").json() for j in rest}  # noqa: E731
    wait_until(
        lambda: all(v["status"] in ("completed", "interrupted") for v in ended().values()),
        "the other jobs to end",
    )
    for view in ended().values():
        on_dead = (view["node"] or "").startswith("n3-")
        assert view["status"] == ("interrupted" if on_dead else "completed"), view
    started = collections.Counter(starts.read_text().split())
    assert max(started.values()) == 1
    assert all(started[j] == 1 for j in blockers)
    fleet = view_of("/health").json()["fleet"]
    alive = {n["node"].split("-")[0]: n["alive"] for n in fleet["nodes"]}
    assert alive == {"n1": True, "n2": True, "n3": False}
    print(f"kill -9: running jobs interrupted {took:.2f} s after the kill")


def test_several_nodes_create_the_schema_at_once(fleet_url: str) -> None:
    from shoal.service.pgstore import PgStore

    def open_one(index: int) -> str:
        store = PgStore(fleet_url, f"h{index}-1-0000000{index}", capacity=1, node_timeout_s=5)
        store.close()
        return store.node

    with ThreadPoolExecutor(6) as pool:
        assert len(list(pool.map(open_one, range(6)))) == 6
    tables = rows(
        fleet_url,
        "SELECT table_schema AS s, table_name AS t FROM information_schema.tables "
        "WHERE table_name IN ('jobs', 'nodes') AND table_schema <> 'shoal_serve'",
    )
    assert tables == []  # only in the queue's own schema, nothing in public
