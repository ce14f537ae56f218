"""Admission, concurrency, the FIFO line, time limits and cancellation, through the ASGI app."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.service.conftest import ServeFactory

pytestmark = [pytest.mark.anyio, pytest.mark.all_queues]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_second_execute_while_one_runs_is_accepted_and_both_run_at_once(
    serve: ServeFactory,
) -> None:
    async with serve() as s:
        # Each job waits for the other to have started: both finish only if they overlap.
        a = await s.submit(f"touch {s.path('a')}\nwait {s.path('b')}\nprint a")
        await s.wait_file("a")
        response = await s.client.post(
            "/execute", json={"prompt": f"touch {s.path('b')}\nwait {s.path('a')}\nprint b"}
        )
        assert response.status_code == 202
        assert response.json()["status"] in {"running", "queued"}
        b = response.json()["job_id"]
        for job_id, text in ((a, "a\n"), (b, "b\n")):
            job = await s.wait(job_id)
            assert (job["status"], job["exit_code"], job["output"]) == ("completed", 0, text)


async def test_with_capacity_one_the_second_job_waits_in_line(serve: ServeFactory) -> None:
    async with serve(max_concurrency=1) as s:
        a = await s.submit(f"touch {s.path('a')}\nwait {s.path('go')}")
        await s.wait_file("a")
        response = await s.client.post("/execute", json={"prompt": f"touch {s.path('b')}"})
        assert response.status_code == 202
        assert response.json()["status"] == "queued"
        assert response.json()["position"] == 1
        b = response.json()["job_id"]
        await asyncio.sleep(0.3)
        job_b = await s.job(b)
        assert job_b["status"] == "queued"
        assert job_b["position"] == 1
        assert not s.path("b").exists()
        s.path("go").touch()
        first, second = await s.wait(a), await s.wait(b)
        assert second["status"] == "completed"
        assert second["started_at"] >= first["finished_at"]


async def test_health_shows_load_and_capacity_without_a_token(serve: ServeFactory) -> None:
    async with serve(max_concurrency=1) as s:
        anonymous = httpx.AsyncClient(transport=s.transport, base_url="http://shoal")
        body = (await anonymous.get("/health")).json()
        load = ("status", "busy", "active", "queued", "capacity")
        assert {k: body[k] for k in load} == {
            "status": "ok",
            "busy": False,
            "active": 0,
            "queued": 0,
            "capacity": 1,
        }
        assert body["node"] == s.service.store.node
        await s.submit(f"touch {s.path('a')}\nwait {s.path('go')}")
        await s.submit("print queued")
        await s.wait_file("a")
        body = (await anonymous.get("/health")).json()
        assert {k: body[k] for k in load} == {
            "status": "ok",
            "busy": True,
            "active": 1,
            "queued": 1,
            "capacity": 1,
        }
        if s.settings.queue is None:
            assert body["fleet"] is None
        else:
            (node,) = body["fleet"]["nodes"]
            assert (node["node"], node["alive"], node["running"]) == (body["node"], True, 1)
            assert node["heartbeat_age_s"] < 5
            assert (body["fleet"]["queued"], body["fleet"]["capacity"]) == (1, 1)
        s.path("go").touch()


async def test_queue_depth_overflow_is_429_with_retry_after(serve: ServeFactory) -> None:
    async with serve(max_concurrency=1, max_queue_depth=2) as s:
        await s.submit(f"touch {s.path('a')}\nwait {s.path('go')}")
        await s.submit("print second")
        third = await s.client.post("/execute", json={"prompt": "print third"})
        assert third.status_code == 429
        assert int(third.headers["Retry-After"]) > 0
        chat = await s.client.post(
            "/v1/chat/completions",
            json={"model": "fake", "messages": [{"role": "user", "content": "print x"}]},
        )
        assert chat.status_code == 429
        assert "Retry-After" in chat.headers
        s.path("go").touch()


async def test_a_job_queued_longer_than_its_timeout_still_runs(serve: ServeFactory) -> None:
    async with serve(max_concurrency=1) as s:
        await s.submit(f"touch {s.path('a')}\nwait {s.path('go')}")
        await s.wait_file("a")
        b = await s.submit("print done", timeout_s=1.0)
        await asyncio.sleep(1.3)  # longer than b's whole time limit, all of it in the line
        assert (await s.job(b))["status"] == "queued"
        s.path("go").touch()
        job = await s.wait(b)
        assert (job["status"], job["output"]) == ("completed", "done\n")


async def test_timeout_counts_from_the_start_and_kills_the_process_group(
    serve: ServeFactory,
) -> None:
    async with serve() as s:
        prompt = f"pid {s.path('pid')}\nchild {s.path('child')}\ntouch {s.path('a')}\nsleep 60"
        job_id = await s.submit(prompt, timeout_s=1.0)
        started = time.monotonic()
        job = await s.wait(job_id)
        assert job["status"] == "timed_out"
        assert job["exit_code"] is None
        assert time.monotonic() - started < 10
        assert gone(int(s.path("pid").read_text()))
        assert gone(int(s.path("child").read_text()))


async def test_cancel_a_queued_job(serve: ServeFactory, tmp_path: Path) -> None:
    async with serve(max_concurrency=1) as s:
        await s.submit(f"touch {s.path('a')}\nwait {s.path('go')}")
        await s.wait_file("a")
        b = await s.submit(f"touch {s.path('b')}")
        response = await s.client.post(f"/jobs/{b}/cancel")
        assert response.status_code == 200
        assert response.json()["status"] == "cancelled"
        s.path("go").touch()
        await asyncio.sleep(0.3)
        assert (await s.job(b))["status"] == "cancelled"
        assert not s.path("b").exists()
        assert not (tmp_path / "state" / "jobs" / b).exists()


async def test_cancel_a_running_job_kills_its_group_and_removes_its_workspace(
    serve: ServeFactory, tmp_path: Path
) -> None:
    async with serve() as s:
        prompt = f"pid {s.path('pid')}\nchild {s.path('child')}\ntouch {s.path('a')}\nsleep 60"
        job_id = await s.submit(prompt)
        await s.wait_file("a")
        workspace = Path((await s.job(job_id))["workspace"])
        assert workspace.is_dir()
        response = await s.client.post(f"/jobs/{job_id}/cancel")
        assert response.status_code == 200
        assert response.json()["status"] == "cancelled"
        assert gone(int(s.path("pid").read_text()))
        assert gone(int(s.path("child").read_text()))
        assert not workspace.exists()
        assert not (tmp_path / "state" / "jobs" / job_id).exists()
        again = await s.client.post(f"/jobs/{job_id}/cancel")
        assert again.json()["status"] == "cancelled"


async def test_exit_code_and_output_are_recorded(serve: ServeFactory) -> None:
    async with serve() as s:
        job = await s.wait(await s.submit("print partial\nexit 3", metadata={"ticket": 7}))
        assert (job["status"], job["exit_code"], job["output"]) == ("failed", 3, "partial\n")
        assert job["metadata"] == {"ticket": 7}
        assert job["queued_at"] <= job["started_at"] <= job["finished_at"]
        listed = (await s.client.get("/jobs", params={"status": "failed"})).json()["jobs"]
        assert [j["job_id"] for j in listed] == [job["job_id"]]


async def test_finished_jobs_past_ttl_are_evicted_running_and_queued_stay(
    serve: ServeFactory,
) -> None:
    async with serve(max_concurrency=1, job_ttl_seconds=0.2) as s:
        done = await s.submit("print quick")
        await s.wait(done)
        running = await s.submit(f"touch {s.path('a')}\nwait {s.path('go')}")
        queued = await s.submit("print later")
        await s.wait_file("a")
        deadline = time.monotonic() + 10
        while (await s.client.get(f"/jobs/{done}")).status_code != 404:
            assert time.monotonic() < deadline, "finished job never evicted"
            await asyncio.sleep(0.05)
        assert (await s.job(running))["status"] == "running"
        assert (await s.job(queued))["status"] == "queued"
        s.path("go").touch()
