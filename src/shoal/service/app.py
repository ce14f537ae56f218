"""The app factory: settings in, a FastAPI app out; the job service lives in the lifespan."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from shoal.errors import ConfigError, UsageError
from shoal.service import chat, ui
from shoal.service.jobs import JobService
from shoal.service.limits import BodyLimit
from shoal.service.models import chat_error
from shoal.service.openapi import openapi_for
from shoal.service.routes import health_router, router
from shoal.service.settings import TOKEN_ENV, ServeSettings

_bearer = HTTPBearer(auto_error=False, description=f"the token in {TOKEN_ENV}")


def _authenticator(settings: ServeSettings) -> Callable[..., Awaitable[None]]:
    secret = settings.token.get_secret_value().encode() if settings.token else b""

    async def require_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        if settings.no_auth:
            return
        given = credentials.credentials.encode() if credentials else b""
        # compare_digest takes the same time wherever the strings differ.
        if not secret or not hmac.compare_digest(given, secret):
            raise HTTPException(
                status_code=401,
                detail="missing or wrong bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return require_token


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # "input" would echo the payload back, prompt and all; the location and reason suffice.
    errors = [
        {"loc": list(e["loc"]), "msg": e["msg"].removeprefix("Value error, "), "type": e["type"]}
        for e in exc.errors()
    ]
    fields = ", ".join(".".join(str(p) for p in e["loc"][1:]) or "body" for e in errors)
    if request.url.path.startswith("/v1/"):
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        param = ".".join(str(p) for p in first["loc"][1:]) or None
        body = chat_error(f"{param}: {first['msg']}", "invalid_request_error", "invalid_request")
        body["error"]["param"] = param
        return JSONResponse(status_code=422, content=body)
    return JSONResponse(status_code=422, content={"detail": errors, "message": f"bad {fields}"})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if not request.url.path.startswith("/v1/"):
        return await http_exception_handler(request, exc)
    # OpenAI clients read only their own error shape, 401 and unknown paths included.
    code = {401: "invalid_api_key", 404: "not_found", 405: "method_not_allowed"}
    body = chat_error(str(exc.detail), "invalid_request_error", code.get(exc.status_code, "error"))
    return JSONResponse(status_code=exc.status_code, content=body, headers=exc.headers)


def create_app(settings: ServeSettings) -> FastAPI:
    """The service for ``settings``; the job service starts and stops with the app."""
    if not settings.no_auth and settings.token is None:
        raise ConfigError([UsageError("token", None, "default", f"set {TOKEN_ENV}")])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = JobService(settings)
        await service.start()
        app.state.service = service
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="shoal serve",
        summary="Coding-agent jobs in isolated checkouts, FIFO-queued.",
        lifespan=lifespan,
    )
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.include_router(health_router)
    app.include_router(ui.router)  # the page only: its data comes from the API, with the token
    app.include_router(router, dependencies=[Depends(_authenticator(settings))])
    app.include_router(chat.router, dependencies=[Depends(_authenticator(settings))])
    app.openapi = openapi_for(app, settings)  # type: ignore[method-assign]
    if settings.cors_origins:  # off unless asked for: the API is not for pages elsewhere
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app
