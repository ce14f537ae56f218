"""HTTP endpoints. Every handler is thin: the job service does the work."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from shoal.service.jobs import JobService, QueueFull, UnknownAgent
from shoal.service.models import (
    Accepted,
    ChatRequest,
    ExecuteRequest,
    Health,
    JobList,
    JobStatus,
    JobView,
    chat_error,
)

# Handlers are async on purpose: the job service lives on the event loop, not in threads.
# Clients are told to come back after this long when the line is full; jobs take minutes,
# so a short fixed hint is as good as an estimate and cannot be wrong by hours.
RETRY_AFTER_S = 5
# The most jobs one GET /jobs returns; each carries its bounded output and diff summary.
MAX_PAGE = 500


def get_service(request: Request) -> JobService:
    service: JobService = request.app.state.service
    return service


Service = Annotated[JobService, Depends(get_service)]
health_router = APIRouter()
router = APIRouter()


def _unknown_agent(service: JobService, name: str, field: str) -> JSONResponse:
    message = f"unknown agent {name!r}; expected one of {sorted(service.settings.agents)}"
    return JSONResponse(
        status_code=422,
        content={"detail": [{"loc": ["body", field], "msg": message, "type": "value_error"}]},
    )


def _too_busy(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(status_code=429, content=body, headers={"Retry-After": str(RETRY_AFTER_S)})


def _job_or_404(service: JobService, job_id: str) -> JobView:
    job = service.get(job_id)
    if job is None:
        raise HTTPException(status_code=404, detail=f"no job {job_id!r} (unknown or evicted)")
    return service.view(job)


@health_router.get("/health", response_model=Health)
async def health(service: Service) -> Health:
    active, capacity = service.scheduler.active, service.scheduler.capacity
    queued = service.store.queued()
    return Health(
        status="ok", busy=active >= capacity, active=active, queued=queued, capacity=capacity
    )


@router.post("/execute", status_code=202, response_model=Accepted)
async def execute(body: ExecuteRequest, service: Service) -> Accepted | JSONResponse:
    try:
        job, position = service.submit(
            prompt=body.prompt, agent=body.agent, ref=body.ref, timeout_s=body.timeout_s,
            metadata=body.metadata, save_branch=body.save_branch,
        )  # fmt: skip
    except UnknownAgent as exc:
        return _unknown_agent(service, str(exc), "agent")
    except QueueFull:
        depth = service.settings.max_queue_depth
        return _too_busy({"detail": f"{depth} jobs are running or waiting (max_queue_depth)"})
    status = JobStatus.running if position == 0 else JobStatus.queued
    return Accepted(job_id=job.id, status=status, position=position)


@router.get("/jobs", response_model=JobList)
async def list_jobs(
    service: Service,
    status: Annotated[JobStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    after: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="the `next` of the previous page")
    ] = 0,
) -> JobList:
    # One more than the page, to know whether there is a next one.
    jobs = service.jobs(status, after_seq=after, limit=limit + 1)
    page = jobs[:limit]
    more = len(jobs) > limit
    return JobList(jobs=[service.view(job) for job in page], next=page[-1].seq if more else None)


@router.get("/jobs/{job_id}", response_model=JobView)
async def get_job(job_id: str, service: Service) -> JobView:
    return _job_or_404(service, job_id)


@router.post("/jobs/{job_id}/cancel", response_model=JobView)
async def cancel_job(job_id: str, service: Service) -> JobView:
    _job_or_404(service, job_id)
    job = await service.cancel(job_id)
    if job is None:
        raise HTTPException(status_code=404, detail=f"no job {job_id!r} (unknown or evicted)")
    return service.view(job)


def _sse(data: object, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n"


@router.get("/jobs/{job_id}/events", response_class=StreamingResponse)
async def job_events(job_id: str, service: Service) -> StreamingResponse:
    """Server-sent events: ``output`` (a JSON string per piece), then one ``end``."""
    _job_or_404(service, job_id)

    async def events() -> AsyncIterator[str]:
        async for text in service.follow(job_id):
            yield _sse(text, "output")
        job = service.get(job_id)
        status = job.status.value if job else "evicted"
        yield _sse({"status": status, "exit_code": job.exit_code if job else None}, "end")

    return StreamingResponse(events(), media_type="text/event-stream")


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    body: ChatRequest, request: Request, service: Service
) -> JSONResponse | StreamingResponse:
    agent = body.model if body.model in service.settings.agents else None
    try:
        job, _ = service.submit(prompt=body.prompt(), agent=agent, kind="chat", model=body.model)
    except QueueFull:
        return _too_busy(chat_error("all slots and the queue are full", "rate_limit", "busy"))
    created, chat_id = int(time.time()), f"chatcmpl-{job.id}"
    if body.stream:
        return StreamingResponse(
            _chat_stream(service, job.id, chat_id, created, body.model),
            media_type="text/event-stream",
        )
    waiter = asyncio.ensure_future(service.wait(job.id))
    while not waiter.done():
        await asyncio.wait({waiter}, timeout=1.0)
        if not waiter.done() and await request.is_disconnected():
            waiter.cancel()
            await service.cancel(job.id)
            return JSONResponse(
                status_code=499,
                content=chat_error(
                    "the client closed the connection", "cancelled", "client_closed"
                ),
            )
    final = waiter.result()
    if final is None or final.status is not JobStatus.completed:
        return _chat_failure(final.status if final else None, final.error if final else None)
    return JSONResponse({
        "id": chat_id, "object": "chat.completion", "created": created, "model": body.model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": final.output}}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    })  # fmt: skip


def _chat_failure(status: JobStatus | None, error: str | None) -> JSONResponse:
    code = 504 if status is JobStatus.timed_out else 502
    what = status.value if status else "evicted"
    message = f"the agent run ended {what}" + (f": {error}" if error else "")
    return JSONResponse(status_code=code, content=chat_error(message, "agent_error", what))


async def _chat_stream(
    service: JobService, job_id: str, chat_id: str, created: int, model: str
) -> AsyncIterator[str]:
    def chunk(delta: dict[str, str], finish: str | None = None) -> str:
        return "data: " + json.dumps({
            "id": chat_id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }) + "\n\n"  # fmt: skip

    finished = False
    try:
        yield chunk({"role": "assistant", "content": ""})
        async for text in service.follow(job_id):
            yield chunk({"content": text})
        finished = True
        job = service.get(job_id)
        if job is not None and job.status is JobStatus.completed:
            yield chunk({}, "stop")
        else:
            status = job.status.value if job else "evicted"
            yield "data: " + json.dumps(chat_error(f"the agent run ended {status}",
                                                   "agent_error", status)) + "\n\n"  # fmt: skip
        yield "data: [DONE]\n\n"
    finally:
        if not finished:
            # The caller hung up: nobody will read the answer, so free the slot.
            service.spawn(service.cancel(job_id))
