"""The official OpenAI SDK against a real server: retries, timeouts, models, conversations."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, cast

import httpx
import openai
import pytest

from tests.service.conftest import FAKE_AGENT, TOKEN, LiveFactory, agents

# The whole surface on both job stores: SQLite, and PostgreSQL (embedded).
pytestmark = [pytest.mark.anyio, pytest.mark.stores]


def chat_jobs(base_url: str) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    jobs = httpx.get(f"{base_url}/jobs", headers=headers).json()["jobs"]
    return [job for job in jobs if job["kind"] == "chat"]


def wait_for(check: Any, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def test_a_failing_agent_is_one_job_and_not_retried(live: LiveFactory) -> None:
    # A keep-alive interval longer than the run: the answer keeps its own status.
    with live(keepalive_s=10) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=TOKEN, max_retries=2)
        with pytest.raises(openai.InternalServerError) as failed:
            client.chat.completions.create(model="fake", messages=user("print half\nexit 5"))
        assert failed.value.status_code == 502
        assert failed.value.response.headers["x-should-retry"] == "false"
        stream = client.chat.completions.create(
            model="fake", messages=user("print other\nexit 6"), stream=True
        )
        with pytest.raises(openai.APIError):
            list(stream)
        jobs = chat_jobs(url)
    assert sorted(job["exit_code"] for job in jobs) == [5, 6]


def test_a_client_timeout_and_its_retries_attach_to_one_job(
    live: LiveFactory, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    # No keep-alive byte within the client's timeout: each attempt times out.
    with live(keepalive_s=5, reattach_s=30) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=TOKEN, max_retries=2, timeout=0.5)
        messages = user(f"wait {go}\nprint finally")
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(model="fake", messages=messages)
        jobs = chat_jobs(url)
        assert [job["status"] for job in jobs] == ["running"]
        go.touch()
        # A later retry of the same request, after the job ended, gets its answer.
        patient = openai.OpenAI(base_url=f"{url}/v1", api_key=TOKEN, max_retries=0)
        wait_for(lambda: chat_jobs(url)[0]["status"] == "completed", "the job to finish")
        answer = patient.chat.completions.create(
            model="fake", messages=messages, extra_headers={"x-stainless-retry-count": "1"}
        )
        assert answer.choices[0].message.content == "finally\n"
        assert len(chat_jobs(url)) == 1


async def test_async_client_timeouts_make_one_job_and_keepalives_outlast_read_timeouts(
    live: LiveFactory, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    # Each client closed in the test: one left to the garbage collector closes its
    # connections on whatever loop is current then, a closed one at the test's end.
    with live(keepalive_s=0.3, reattach_s=30) as url:
        # Silent for longer than the client's read timeout: the keep-alives carry it.
        slow = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=TOKEN, max_retries=0, timeout=1)
        async with slow:
            answer, streamed, failed = await asyncio.gather(
                slow.chat.completions.create(model="fake", messages=user("sleep 2\nprint late")),
                slow.chat.completions.create(
                    model="stdin", messages=user("sleep 2\nprint streamed"), stream=True
                ),
                slow.chat.completions.create(model="fake", messages=user("sleep 1\nexit 3")),
            )
            assert answer.choices[0].message.content == "late\n"
            assert answer.choices[0].finish_reason == "stop"
            # Once the status line has gone out, a failure is told in the body, with a finish
            # reason of ours the SDK's Literal does not list.
            assert cast(str, failed.choices[0].finish_reason) == "error"
            assert (failed.model_extra or {})["error"]["code"] == "failed"
            text = "".join([c.choices[0].delta.content or "" async for c in streamed if c.choices])
            assert text == "streamed\n"
            assert len(chat_jobs(url)) == 3
    # With keep-alives later than the client's timeout, every attempt times out: one job.
    with live(keepalive_s=5, reattach_s=30) as url:
        hasty = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=TOKEN, max_retries=2, timeout=0.5)
        async with hasty:
            with pytest.raises(openai.APITimeoutError):
                await hasty.chat.completions.create(model="fake", messages=user(f"wait {go}"))
        # The same state directory: the three jobs above, and one for all three attempts.
        statuses = [job["status"] for job in chat_jobs(url)]
        assert (sorted(statuses[:-1]), statuses[-1]) == (
            ["completed", "completed", "failed"],
            "running",
        )
        go.touch()


def test_models_are_the_agents_and_an_unknown_model_is_not_found(
    live: LiveFactory, tmp_path: Path
) -> None:
    with live() as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=TOKEN, max_retries=0)
        assert [m.id for m in client.models.list()] == list(agents(tmp_path))
        assert client.models.retrieve("fake").owned_by == "shoal"
        with pytest.raises(openai.NotFoundError) as missing:
            client.models.retrieve("gpt-4o")
        assert missing.value.code == "model_not_found"
        with pytest.raises(openai.NotFoundError) as unknown:
            client.chat.completions.create(model="gpt-4o", messages=user("print x"))
        assert unknown.value.code == "model_not_found"
        assert unknown.value.param == "model"
        anonymous = openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as refused:
            anonymous.models.list()
        assert refused.value.code == "invalid_api_key"
        for extra, param in (({"n": 2}, "n"), ({"tools": [{"type": "function"}]}, "tools")):
            with pytest.raises(openai.BadRequestError) as bad:
                client.chat.completions.create(model="fake", messages=user("x"), **extra)
            assert bad.value.param == param
        assert chat_jobs(url) == []


CONVERSATION: list[Any] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is in app.py?"},
    {"role": "assistant", "content": "Two assignments."},
    {
        "role": "user",
        "content": [{"type": "text", "text": "Change "}, {"type": "text", "text": "the second."}],
    },
]
RENDERED = (
    "### system\nYou are terse.\n\n### user\nWhat is in app.py?\n\n"
    "### assistant\nTwo assignments.\n\n### user\nChange the second.\n"
)


async def test_the_whole_conversation_reaches_the_agent(live: LiveFactory, tmp_path: Path) -> None:
    dumps = tmp_path / "dumps"
    json_agent = [
        sys.executable,
        str(FAKE_AGENT),
        "--dump",
        str(dumps / "{job_id}"),
        "{stdin_json}",
    ]
    with live(agents={**agents(tmp_path), "json": json_agent}) as url:
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=TOKEN, max_retries=0) as client:
            for model in ("dump", "dump-stdin", "json/some-model"):
                await client.chat.completions.create(model=model, messages=CONVERSATION)
            by_agent = {job["agent"]: job["job_id"] for job in chat_jobs(url)}
    assert (dumps / by_agent["dump"]).read_text() == RENDERED
    assert (dumps / by_agent["dump-stdin"]).read_text() == RENDERED
    sent = json.loads((dumps / by_agent["json"]).read_text())
    assert sent["model"] == "some-model"
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
    assert sent["messages"][-1]["content"] == "Change the second."


async def test_usage_is_counted_by_its_rule_and_streamed_when_asked(live: LiveFactory) -> None:
    prompt = "print twelve chars"
    with live() as url:
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=TOKEN, max_retries=0) as client:
            answer = await client.chat.completions.create(model="fake", messages=user(prompt))
            chunks = [
                chunk
                async for chunk in await client.chat.completions.create(
                    model="fake",
                    messages=user(prompt),
                    stream=True,
                    stream_options={"include_usage": True},
                )
            ]
            plain = [
                c
                async for c in await client.chat.completions.create(
                    model="fake", messages=user(prompt), stream=True
                )
            ]
    expected = (math.ceil(len(prompt) / 4), math.ceil(len("twelve chars\n") / 4))
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == expected
    assert answer.usage.total_tokens == sum(expected)
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == expected
    assert all(c.usage is None for c in plain)


def test_idempotency_key_and_retry_marker_attach_to_the_job_made_before(
    live: LiveFactory,
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with live() as url, httpx.Client(base_url=url, headers=headers) as http:
        first = http.post("/execute", json={"prompt": "print a"}, headers={"Idempotency-Key": "k1"})
        again = http.post("/execute", json={"prompt": "print a"}, headers={"Idempotency-Key": "k1"})
        other = http.post("/execute", json={"prompt": "print b"}, headers={"Idempotency-Key": "k1"})
        assert first.status_code == again.status_code == 202
        assert again.json()["job_id"] == first.json()["job_id"]
        assert again.headers["Idempotent-Replayed"] == "true"
        assert other.status_code == 409
        assert other.headers["x-should-retry"] == "false"
        assert "Idempotency-Key 'k1'" in other.json()["detail"]
        retry = {"x-stainless-retry-count": "1"}
        made = http.post("/execute", json={"prompt": "print c"})
        retried = http.post("/execute", json={"prompt": "print c"}, headers=retry)
        fresh = http.post("/execute", json={"prompt": "print c"})
        assert retried.json()["job_id"] == made.json()["job_id"]
        assert fresh.json()["job_id"] != made.json()["job_id"]
        assert len(http.get("/jobs").json()["jobs"]) == 3
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=TOKEN, max_retries=0)
        keyed = {"Idempotency-Key": "chat-1"}
        answers = [
            client.chat.completions.create(
                model="fake", messages=user("print hi"), extra_headers=keyed
            )
            for _ in range(2)
        ]
        assert answers[0].id == answers[1].id
        assert answers[1].choices[0].message.content == "hi\n"
        with pytest.raises(openai.ConflictError):
            client.chat.completions.create(
                model="fake", messages=user("print other"), extra_headers=keyed
            )
        assert len(http.get("/jobs").json()["jobs"]) == 4


def test_an_abandoned_chat_job_is_cancelled_once_no_retry_came(
    live: LiveFactory, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    with live(keepalive_s=5, reattach_s=0.5) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=TOKEN, max_retries=0, timeout=0.5)
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(model="fake", messages=user(f"wait {go}"))
        assert [job["status"] for job in chat_jobs(url)] == ["running"]
        wait_for(lambda: chat_jobs(url)[0]["status"] == "cancelled", "the abandoned job to end")


def test_streams_send_a_first_byte_at_once_and_keepalives_while_silent(
    live: LiveFactory, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with (
        live(max_concurrency=1, keepalive_s=0.2) as url,
        httpx.Client(base_url=url, headers=headers, timeout=10) as http,
    ):
        http.post("/execute", json={"prompt": f"wait {go}"})
        queued = http.post("/execute", json={"prompt": "print after"}).json()["job_id"]
        started = time.monotonic()
        with http.stream("GET", f"/jobs/{queued}/events") as response:
            assert response.headers["cache-control"] == "no-cache"
            lines = response.iter_lines()
            assert next(lines) == ": keep-alive"
            assert time.monotonic() - started < 1  # while the job still waits in line
            assert [next(lines) for _ in range(4)] == ["", ": keep-alive", "", ": keep-alive"]
            go.touch()
            rest = [line for line in lines if line and line != ": keep-alive"]
        assert rest[-2:] == ["event: end", 'data: {"status": "completed", "exit_code": 0}']
        output = [json.loads(b[6:]) for a, b in itertools.pairwise(rest) if a == "event: output"]
        assert "".join(output) == "after\n"
