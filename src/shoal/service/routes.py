"""HTTP endpoints of jobs. Every handler is thin: the job service does the work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse

from shoal.service import retries
from shoal.service.admission import PromptTooLong, ShuttingDown
from shoal.service.jobs import JobService, QueueFull, UnknownAgent
from shoal.service.models import (
    Accepted,
    ErrorDetail,
    ExecuteRequest,
    Health,
    JobList,
    JobStatus,
    JobView,
)
from shoal.service.streams import KEEPALIVE, SSE_EVENT, STREAM_HEADERS, Pause, paced, sse

# Handlers are async on purpose: the job service lives on the event loop, not in threads.
# Clients are told to come back after this long when the line is full; jobs take minutes,
# so a short fixed hint is as good as an estimate and cannot be wrong by hours.
RETRY_AFTER_S = 5
# The most jobs one GET /jobs returns; each carries its bounded output and diff summary.
MAX_PAGE = 500
# What any operation behind the token may answer besides its own outcomes.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorDetail, "description": "the body is not readable (e.g. not UTF-8)"},
    401: {"model": ErrorDetail, "description": "missing or wrong bearer token"},
    413: {"model": ErrorDetail, "description": "request body over max_body_bytes"},
    422: {"model": ErrorDetail, "description": "bad request: the field is named"},
}
JOB_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "unknown or evicted job"},
    **ERRORS,
}
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=retries.MAX_KEY_CHARS,
        description="the same key answers the job already made for it",
    ),
]


def get_service(request: Request) -> JobService:
    service: JobService = request.app.state.service
    return service


async def no_unknown_query(request: Request) -> None:
    """Refuse query parameters the operation does not take: a typo must not pass silently."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = {param.alias for param in dependant.query_params}
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        expected = f"one of {sorted(known)}" if known else "none"
        raise RequestValidationError(
            [
                {
                    "loc": ("query", unknown[0]),
                    "type": "extra_forbidden",
                    "msg": f"unknown query parameter; expected {expected}",
                }
            ]
        )


Service = Annotated[JobService, Depends(get_service)]
health_router = APIRouter(dependencies=[Depends(no_unknown_query)])
router = APIRouter(dependencies=[Depends(no_unknown_query)])


def _unknown_agent(service: JobService, name: str, field: str) -> JSONResponse:
    message = f"unknown agent {name!r}; expected one of {sorted(service.settings.agents)}"
    return _refused(["body", field], message)


def _refused(loc: list[str], message: str) -> JSONResponse:
    return JSONResponse(
        status_code=422,
        content={
            "detail": [{"loc": loc, "msg": message, "type": "value_error"}],
            "message": f"bad {loc[-1]}",
        },
    )


def _key_in_use(key: str) -> JSONResponse:
    # 409 as the Idempotency-Key draft has it; no retry can change the answer.
    message = f"Idempotency-Key {key!r} was already used for a different request; use a new key"
    return JSONResponse(
        status_code=409,
        content={"detail": message, "message": message},
        headers={"x-should-retry": "false"},
    )


def _too_busy(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(status_code=429, content=body, headers={"Retry-After": str(RETRY_AFTER_S)})


def _stopping(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(status_code=503, content=body, headers={"Retry-After": str(RETRY_AFTER_S)})


async def _job_or_404(service: JobService, job_id: str) -> JobView:
    job = await service.get(job_id)
    if job is None:
        raise HTTPException(status_code=404, detail=f"no job {job_id!r} (unknown or evicted)")
    return await service.view(job)


@health_router.get("/health", response_model=Health)
async def health(service: Service) -> Health:
    active, capacity = service.scheduler.active, service.scheduler.capacity
    queued = await service.store.queued()
    return Health(
        status="ok",
        busy=active >= capacity,
        active=active,
        queued=queued,
        capacity=capacity,
        node=service.store.node,
        fleet=await service.fleet_health(),
    )


@router.post(
    "/execute",
    status_code=202,
    response_model=Accepted,
    responses={
        409: {"model": ErrorDetail, "description": "Idempotency-Key used for another request"},
        429: {"model": ErrorDetail, "description": "the queue is full; retry after Retry-After"},
        503: {"model": ErrorDetail, "description": "shutting down; retry after Retry-After"},
        **ERRORS,
    },
)
async def execute(
    body: ExecuteRequest,
    request: Request,
    service: Service,
    idempotency_key: IdempotencyKey = None,
) -> Accepted | JSONResponse:
    """Queue a job. A request with a known ``Idempotency-Key`` (or an SDK retry of one
    just made) answers the job made for it, with ``Idempotent-Replayed: true``."""
    try:
        attempt = retries.attempt("execute", request.headers, body.model_dump(mode="json"))
        admitted = await service.submit(
            prompt=body.prompt,
            agent=body.agent,
            attempt=attempt,
            ref=body.ref,
            timeout_s=body.timeout_s,
            metadata=body.metadata,
            save_branch=body.save_branch,
        )
    except retries.KeyReused as exc:
        return _key_in_use(str(exc))
    except retries.BadKey as exc:
        return _refused(["header", "Idempotency-Key"], str(exc))
    except UnknownAgent as exc:
        return _unknown_agent(service, str(exc), "agent")
    except PromptTooLong as exc:
        return _refused(["body", "prompt"], str(exc))
    except QueueFull:
        depth = service.settings.max_queue_depth
        return _too_busy({"detail": f"{depth} jobs are running or waiting (max_queue_depth)"})
    except ShuttingDown:
        return _stopping({"detail": "the service is shutting down; try again after it restarts"})
    job = admitted.job
    status = job.status
    if status is JobStatus.queued and admitted.position == 0:
        status = JobStatus.running
    accepted = Accepted(job_id=job.id, status=status, position=admitted.position)
    if not admitted.again:
        return accepted
    return JSONResponse(
        status_code=202,
        content=accepted.model_dump(mode="json"),
        headers={"Idempotent-Replayed": "true"},
    )


@router.get("/jobs", response_model=JobList, responses=ERRORS)
async def list_jobs(
    service: Service,
    status: Annotated[JobStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    after: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="the `next` of the previous page")
    ] = 0,
) -> JobList:
    # One more than the page, to know whether there is a next one.
    jobs = await service.jobs(status, after_seq=after, limit=limit + 1)
    page = jobs[:limit]
    more = len(jobs) > limit
    views = [await service.view(job) for job in page]
    return JobList(jobs=views, next=page[-1].seq if more else None)


@router.get("/jobs/{job_id}", response_model=JobView, responses=JOB_ERRORS)
async def get_job(job_id: str, service: Service) -> JobView:
    return await _job_or_404(service, job_id)


@router.post("/jobs/{job_id}/cancel", response_model=JobView, responses=JOB_ERRORS)
async def cancel_job(job_id: str, service: Service) -> JobView:
    await _job_or_404(service, job_id)
    job = await service.cancel(job_id)
    if job is None:
        raise HTTPException(status_code=404, detail=f"no job {job_id!r} (unknown or evicted)")
    return await service.view(job)


@router.get(
    "/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {"schema": SSE_EVENT}}},
        **JOB_ERRORS,
    },
)
async def job_events(job_id: str, service: Service) -> StreamingResponse:
    """Server-sent events: ``output`` (a JSON string per piece), then one ``end``.

    A ``: keep-alive`` comment comes first and after every silent ``keepalive_s``; on
    shutdown the stream ends with ``end`` carrying ``"status": "stopping"``.
    """
    await _job_or_404(service, job_id)

    async def events() -> AsyncIterator[str]:
        yield KEEPALIVE
        interval = service.settings.keepalive_s
        async for item in paced(service.follow(job_id), interval, service.stopping):
            if item is Pause.tick:
                yield KEEPALIVE
            elif item is Pause.stop:
                yield sse({"status": "stopping", "exit_code": None}, "end")
                return
            else:
                yield sse(item, "output")
        job = await service.get(job_id)
        status = job.status.value if job else "evicted"
        yield sse({"status": status, "exit_code": job.exit_code if job else None}, "end")

    return StreamingResponse(events(), media_type="text/event-stream", headers=STREAM_HEADERS)
