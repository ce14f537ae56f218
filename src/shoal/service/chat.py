"""The OpenAI-compatible surface: ``/v1/models`` and ``/v1/chat/completions``.

Which failures a client should retry, told by status and ``x-should-retry`` (read by the
OpenAI SDKs, which otherwise retry every 5xx):

* full queue (429) and shutting down (503): retry, after ``Retry-After``;
* the agent failed, timed out or was cancelled (502, 504): do not; the same request
  would get the same job (see :mod:`.retries`), and a new one would fail the same way;
* the service stopped under the job (``interrupted``, 503): retry; a retry runs it anew.

A non-streaming answer that has not come within ``keepalive_s`` is sent as 200 with
whitespace every ``keepalive_s`` before the JSON body (JSON parsers skip it); its
failure is then told in the body: ``finish_reason: "error"`` and an ``error`` object.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from shoal.service import retries
from shoal.service.admission import Admitted, PromptTooLong, ShuttingDown
from shoal.service.jobs import JobService, QueueFull
from shoal.service.models import (
    ChatRequest,
    JobStatus,
    ModelCard,
    ModelList,
    OpenAIError,
    chat_error,
)
from shoal.service.routes import RETRY_AFTER_S, IdempotencyKey, get_service, no_unknown_query
from shoal.service.store import Job
from shoal.service.streams import KEEPALIVE, SSE_EVENT, STREAM_HEADERS, Pause, paced

Service = Annotated[JobService, Depends(get_service)]
router = APIRouter(dependencies=[Depends(no_unknown_query)])
# Agents report no token counts; usage is counted by this documented rule instead:
# one token per four characters, rounded up (about what tokenizers give for English).
CHARS_PER_TOKEN = 4
V1_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": OpenAIError, "description": what}
    for code, what in {
        400: "a parameter this service does not support, or an unreadable body",
        409: "Idempotency-Key already used for a different request",
        401: "missing or wrong bearer token",
        404: "unknown model",
        413: "request body over max_body_bytes",
        422: "bad request: the parameter is named",
        429: "all slots and the queue are full; retry after Retry-After",
        502: "the agent failed or was cancelled (not worth a retry)",
        503: "the service is shutting down or stopped under the job; retry",
        504: "the agent run timed out (not worth a retry)",
    }.items()
}


def openai_error(
    status: int,
    message: str,
    kind: str,
    code: str,
    *,
    param: str | None = None,
    retry: bool | None = None,
) -> JSONResponse:
    headers = {}
    if retry is not None:
        headers["x-should-retry"] = "true" if retry else "false"
    if status in (429, 503):
        headers["Retry-After"] = str(RETRY_AFTER_S)
    body = chat_error(message, kind, code, param)
    return JSONResponse(status_code=status, content=body, headers=headers)


def _cards(service: JobService) -> list[ModelCard]:
    created = int(service.started_at)
    return [
        ModelCard(id=name, created=created, owned_by="shoal") for name in service.settings.agents
    ]


@router.get("/v1/models", response_model=ModelList, responses=V1_ERRORS)
async def list_models(service: Service) -> ModelList:
    """The configured agents; ``AGENT/MODEL`` also runs AGENT, given MODEL as ``{model}``."""
    return ModelList(data=_cards(service))


@router.get("/v1/models/{model_id:path}", response_model=ModelCard, responses=V1_ERRORS)
async def get_model(model_id: str, service: Service) -> ModelCard | JSONResponse:
    for card in _cards(service):
        if card.id == model_id:
            return card
    return _no_model(service, model_id)


def _no_model(service: JobService, model: str) -> JSONResponse:
    return openai_error(
        404,
        f"the model {model!r} does not exist; expected one of {sorted(service.settings.agents)}"
        " (or AGENT/MODEL)",
        "invalid_request_error",
        "model_not_found",
        param="model",
    )


@router.post(
    "/v1/chat/completions",
    response_model=None,
    responses={
        200: {
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/event-stream": {"schema": SSE_EVENT},
            }
        },
        **V1_ERRORS,
    },
)
async def chat_completions(
    body: ChatRequest, request: Request, service: Service, idempotency_key: IdempotencyKey = None
) -> Response:
    if body.n not in (None, 1):
        return openai_error(
            400,
            f"n = {body.n}: this service gives one answer per request; send n = 1",
            "invalid_request_error",
            "unsupported_parameter",
            param="n",
        )
    if body.tools:
        return openai_error(
            400,
            "tools: agents here do not call client-side tools; send no tools",
            "invalid_request_error",
            "unsupported_parameter",
            param="tools",
        )
    if body.agent not in service.settings.agents:
        return _no_model(service, body.model)
    model = body.model.partition("/")[2] or body.model
    try:
        attempt = retries.attempt("chat", request.headers, body.model_dump(mode="json"))
        admitted = await service.submit(
            prompt=body.prompt(),
            agent=body.agent,
            attempt=attempt,
            kind="chat",
            model=model,
            messages=body.conversation(),
        )
    except retries.KeyReused as exc:
        return openai_error(
            409,
            f"Idempotency-Key {str(exc)!r} was already used for a different request",
            "invalid_request_error",
            "idempotency_key_reused",
            param="Idempotency-Key",
            retry=False,
        )
    except retries.BadKey as exc:
        return openai_error(
            422,
            f"Idempotency-Key: {exc}",
            "invalid_request_error",
            "invalid_idempotency_key",
            param="Idempotency-Key",
        )
    except PromptTooLong as exc:
        return openai_error(
            422, str(exc), "invalid_request_error", "prompt_too_long", param="messages"
        )
    except QueueFull:
        return openai_error(429, "all slots and the queue are full", "rate_limit", "busy")
    except ShuttingDown:
        return openai_error(503, "the service is shutting down", "server_error", "shutting_down")
    answer = _Answer(service, admitted, body)
    if body.stream:
        return StreamingResponse(
            answer.stream(), media_type="text/event-stream", headers=STREAM_HEADERS
        )
    return await answer.wait(request)


class _Answer:
    """One caller of one chat job: attached while it waits, detached when it goes."""

    def __init__(self, service: JobService, admitted: Admitted, body: ChatRequest) -> None:
        self.service = service
        self.job_id = admitted.job.id
        self.body = body
        self.chat_id = f"chatcmpl-{self.job_id}"
        self.created = int(admitted.job.queued_at)
        service.callers.attach(self.job_id)

    def _leave(self, *, answered: bool) -> None:
        self.service.callers.detach(self.job_id, abandon=not answered)

    async def wait(self, request: Request) -> Response:
        """The answer, with its own status if it comes within one keep-alive interval."""
        waiter = asyncio.ensure_future(self.service.wait(self.job_id))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.service.settings.keepalive_s
        while not waiter.done() and loop.time() < deadline:
            await asyncio.wait({waiter}, timeout=min(0.5, max(deadline - loop.time(), 0)))
            if not waiter.done() and await request.is_disconnected():
                waiter.cancel()
                self._leave(answered=False)
                # Nobody reads this; the job waits reattach_s for a retry to attach.
                return openai_error(
                    499, "the client closed the connection", "cancelled", "client_closed"
                )
        if waiter.done():
            self._leave(answered=True)
            return self._final(waiter.result())
        return StreamingResponse(self._kept_alive(waiter), media_type="application/json")

    async def _kept_alive(self, waiter: asyncio.Future[Job | None]) -> AsyncIterator[str]:
        answered = False
        try:
            while True:
                # Whitespace before a JSON value is part of JSON: parsers skip it.
                yield "\n"
                await asyncio.wait({waiter}, timeout=self.service.settings.keepalive_s)
                if waiter.done():
                    break
            answered = True
            yield json.dumps(self._completion(waiter.result()))
        finally:
            if not waiter.done():
                waiter.cancel()
            self._leave(answered=answered)

    def _final(self, job: Job | None) -> Response:
        if job is not None and job.status is JobStatus.completed:
            return JSONResponse(self._completion(job))
        status = job.status if job is not None else None
        message = _failure(job)
        if status is JobStatus.interrupted:
            return openai_error(503, message, "server_error", "interrupted", retry=True)
        code = 504 if status is JobStatus.timed_out else 502
        what = status.value if status else "evicted"
        return openai_error(code, message, "agent_error", what, retry=False)

    def _completion(self, job: Job | None) -> dict[str, Any]:
        ok = job is not None and job.status is JobStatus.completed
        completion: dict[str, Any] = {
            "id": self.chat_id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.body.model,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop" if ok else "error",
                    "message": {"role": "assistant", "content": job.output if job else ""},
                }
            ],
        }
        if job is not None:
            completion["usage"] = usage(job)
        if not ok:
            what = job.status.value if job else "evicted"
            completion["error"] = chat_error(_failure(job), "agent_error", what)["error"]
        return completion

    async def stream(self) -> AsyncIterator[str]:
        answered = False
        try:
            yield self._chunk({"role": "assistant", "content": ""})
            interval = self.service.settings.keepalive_s
            source = self.service.follow(self.job_id)
            async for item in paced(source, interval, self.service.stopping):
                if item is Pause.tick:
                    yield KEEPALIVE
                elif item is Pause.stop:
                    error = chat_error(
                        "the service is shutting down", "server_error", "shutting_down"
                    )
                    yield f"data: {json.dumps(error)}\n\ndata: [DONE]\n\n"
                    answered = True
                    return
                else:
                    yield self._chunk({"content": item})
            answered = True
            job = await self.service.get(self.job_id)
            if job is not None and job.status is JobStatus.completed:
                yield self._chunk({}, "stop")
            else:
                what = job.status.value if job else "evicted"
                error = chat_error(_failure(job), "agent_error", what)
                yield f"data: {json.dumps(error)}\n\n"
            options = self.body.stream_options
            if job is not None and options is not None and options.include_usage:
                yield self._data({"choices": [], "usage": usage(job)})
            yield "data: [DONE]\n\n"
        finally:
            self._leave(answered=answered)

    def _chunk(self, delta: dict[str, str], finish: str | None = None) -> str:
        return self._data({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    def _data(self, fields: dict[str, Any]) -> str:
        head = {
            "id": self.chat_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.body.model,
        }
        return f"data: {json.dumps({**head, **fields})}\n\n"


def _failure(job: Job | None) -> str:
    if job is None:
        return "the agent run ended evicted"
    return f"the agent run ended {job.status.value}" + (f": {job.error}" if job.error else "")


def tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def usage(job: Job) -> dict[str, int]:
    prompt, completion = tokens(job.prompt), tokens(job.output)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
