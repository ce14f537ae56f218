"""Auth, bad input, unknown jobs, prompt fidelity, events, and the OpenAI-compatible endpoint."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.conftest import ServeFactory

# The whole surface on both job stores: SQLite, and PostgreSQL (embedded).
pytestmark = [pytest.mark.anyio, pytest.mark.stores]

NASTY = (
    '\'; touch {sync}/pwned; $(touch {sync}/pwned2) `touch {sync}/pwned3` && echo "x" | cat'
    " > {sync}/pwned4 < /dev/null * ? ~ \\ \\n %s %(x)s ${{HOME}} {{prompt}} {{job_id}}"
    "\n\tsecond line ünïcødé ✓ -- --help"
)


async def test_missing_or_wrong_token_is_401_and_health_is_open(serve: ServeFactory) -> None:
    async with serve() as s:
        anonymous = httpx.AsyncClient(transport=s.transport, base_url="http://shoal")
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
            for method, url in (
                ("POST", "/execute"),
                ("GET", "/jobs"),
                ("GET", "/jobs/x"),
                ("POST", "/v1/chat/completions"),
            ):
                response = await anonymous.request(method, url, headers=headers, json={})
                assert response.status_code == 401, (method, url, headers)
                assert response.headers["WWW-Authenticate"] == "Bearer"
        assert (await anonymous.get("/health")).status_code == 200
        assert (await anonymous.get("/openapi.json")).json()["paths"]["/execute"]


# One service for every case: starting one per case would cost more than the checks.
BAD_EXECUTE = [
    ({}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": 5}, "prompt"),
    ({"prompt": "a\x00b"}, "prompt"),
    ({"prompt": "x", "timeout_s": -1}, "timeout_s"),
    ({"prompt": "x", "timeout_s": "soon"}, "timeout_s"),
    ({"prompt": "x", "ref": "--upload-pack=evil"}, "ref"),
    ({"prompt": "x", "metadata": {"a": [1]}}, "metadata"),
    ({"prompt": "x", "promt": "typo"}, "promt"),
    ({"prompt": "x", "agent": "nobody"}, "agent"),
]


async def test_bad_execute_payload_is_422_naming_the_field(serve: ServeFactory) -> None:
    async with serve() as s:
        for payload, field in BAD_EXECUTE:
            response = await s.client.post("/execute", json=payload)
            assert response.status_code == 422, payload
            fields = [e["loc"][1] for e in response.json()["detail"]]
            assert field in fields, (payload, response.text)
            assert "a\x00b" not in response.text
        assert (await s.client.get("/jobs")).json() == {"jobs": [], "next": None}


async def test_jobs_are_listed_in_pages_in_submission_order(serve: ServeFactory) -> None:
    async with serve() as s:
        submitted = [await s.submit(f"print {n}") for n in range(5)]
        for job_id in submitted:
            await s.wait(job_id)
        pages: list[list[str]] = []
        after = 0
        while True:
            page = (await s.client.get("/jobs", params={"limit": 2, "after": after})).json()
            pages.append([job["job_id"] for job in page["jobs"]])
            if page["next"] is None:
                break
            after = page["next"]
        assert [len(p) for p in pages] == [2, 2, 1]
        assert [job_id for p in pages for job_id in p] == submitted
        for params, field in (
            ({"limit": 0}, "limit"),
            ({"limit": 501}, "limit"),
            ({"after": -1}, "after"),
            ({"after": "x"}, "after"),
        ):
            response = await s.client.get("/jobs", params=params)
            assert response.status_code == 422, params
            assert [e["loc"] for e in response.json()["detail"]] == [["query", field]], params


async def test_non_json_body_is_422(serve: ServeFactory) -> None:
    async with serve() as s:
        response = await s.client.post("/execute", content=b"{nope")
        assert response.status_code == 422


async def test_unknown_job_is_404(serve: ServeFactory) -> None:
    async with serve() as s:
        for method, url in (
            ("GET", "/jobs/nope"),
            ("POST", "/jobs/nope/cancel"),
            ("GET", "/jobs/nope/events"),
        ):
            response = await s.client.request(method, url)
            assert response.status_code == 404
            assert "nope" in response.json()["detail"]


@pytest.mark.parametrize("agent", ["dump", "dump-stdin"])
async def test_shell_metacharacters_reach_the_agent_byte_for_byte(
    serve: ServeFactory, tmp_path: Path, agent: str
) -> None:
    async with serve() as s:
        prompt = NASTY.format(sync=s.sync)
        job_id = await s.submit(prompt, agent=agent)
        assert (await s.wait(job_id))["status"] == "completed"
    assert (tmp_path / "dumps" / job_id).read_bytes() == prompt.encode()
    assert sorted(p.name for p in s.sync.iterdir()) == []


async def test_events_stream_output_then_end(serve: ServeFactory) -> None:
    async with serve() as s:
        job_id = await s.submit("print one\nprint two\nexit 2")
        await s.wait(job_id)
        response = await s.client.get(f"/jobs/{job_id}/events")
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    assert "".join(json.loads(d) for e, d in events if e == "output") == "one\ntwo\n"
    assert events[-1] == ("end", json.dumps({"status": "failed", "exit_code": 2}))


def parse_sse(text: str) -> list[tuple[str | None, str]]:
    events = []
    for block in text.strip().split("\n\n"):
        event, data = None, ""
        for line in block.splitlines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        events.append((event, data))
    return events


def chat(prompt: str, model: str = "fake", **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": prompt},
        ],
        **extra,
    }


async def test_chat_requests_overlap_and_both_answer_200(serve: ServeFactory) -> None:
    async with serve(default_timeout_s=15) as s:
        # Each waits for the other to have started: both answer only if they overlap.
        answers = await asyncio.gather(
            s.client.post(
                "/v1/chat/completions",
                json=chat(f"touch {s.path('a')}\nwait {s.path('b')}\nprint from a"),
            ),
            s.client.post(
                "/v1/chat/completions",
                json=chat(f"touch {s.path('b')}\nwait {s.path('a')}\nprint from b"),
            ),
        )
    assert [a.status_code for a in answers] == [200, 200]
    bodies = [a.json() for a in answers]
    assert [b["choices"][0]["message"] for b in bodies] == [
        {"role": "assistant", "content": "from a\n"},
        {"role": "assistant", "content": "from b\n"},
    ]
    assert {b["object"] for b in bodies} == {"chat.completion"}
    assert bodies[0]["model"] == "fake"


async def test_chat_waits_in_the_same_line(serve: ServeFactory) -> None:
    async with serve(max_concurrency=1) as s:
        first = await s.submit(f"touch {s.path('a')}\nwait {s.path('go')}")
        await s.wait_file("a")
        answer = asyncio.ensure_future(
            s.client.post("/v1/chat/completions", json=chat("print late"))
        )
        await asyncio.sleep(0.3)
        assert not answer.done()
        health = (await s.client.get("/health")).json()
        assert (health["active"], health["queued"]) == (1, 1)
        s.path("go").touch()
        response = await answer
        assert (await s.job(first))["status"] == "completed"
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "late\n"


async def test_chat_stream_sends_completion_chunks(serve: ServeFactory) -> None:
    async with serve() as s:
        response = await s.client.post(
            "/v1/chat/completions", json=chat("print one\nprint two", model="stdin", stream=True)
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    data = [d for _, d in parse_sse(response.text)]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "one\ntwo\n"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_chat_model_selects_the_agent_or_is_passed_to_it(serve: ServeFactory) -> None:
    python_agent = [sys.executable, str(Path(__file__).with_name("fake_agent.py"))]
    agents = {"echo-model": [*python_agent, "print model={model}"]}
    async with serve(agents=agents) as s:
        response = await s.client.post(
            "/v1/chat/completions", json=chat("hi", model="echo-model/gpt-9")
        )
        plain = await s.client.post("/v1/chat/completions", json=chat("hi", model="echo-model"))
        unknown = await s.client.post("/v1/chat/completions", json=chat("hi", model="gpt-9"))
    assert response.json()["choices"][0]["message"]["content"] == "model=gpt-9\n"
    assert plain.json()["choices"][0]["message"]["content"] == "model=echo-model\n"
    # An unknown model is an error, never the default agent in disguise.
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"
    assert unknown.json()["error"]["param"] == "model"


async def test_failed_chat_run_is_an_openai_error(serve: ServeFactory) -> None:
    async with serve() as s:
        response = await s.client.post("/v1/chat/completions", json=chat("exit 5"))
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "failed"


BAD_CHAT = [
    ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": "fake"}, "messages"),
    ({"model": "fake", "messages": []}, "messages"),
    ({"model": "fake", "messages": [{"role": "system", "content": "x"}]}, "messages"),
    ({"model": "fake", "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
    ({"model": "--help", "messages": [{"role": "user", "content": "x"}]}, "model"),
]


async def test_bad_chat_payload_is_422_naming_the_param(serve: ServeFactory) -> None:
    async with serve() as s:
        for payload, param in BAD_CHAT:
            response = await s.client.post("/v1/chat/completions", json=payload)
            assert response.status_code == 422, payload
            assert response.json()["error"]["param"] == param, (payload, response.text)
