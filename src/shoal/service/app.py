"""The app factory: settings in, a FastAPI app out; the job service lives in the lifespan."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shoal.errors import ConfigError, UsageError
from shoal.service.jobs import JobService
from shoal.service.models import chat_error
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
                status_code=401, detail="missing or wrong bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )  # fmt: skip

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
        title="shoal serve", summary="Coding-agent jobs in isolated checkouts, FIFO-queued.",
        lifespan=lifespan,
    )  # fmt: skip
    app.add_exception_handler(RequestValidationError, _invalid)
    app.include_router(health_router)
    app.include_router(router, dependencies=[Depends(_authenticator(settings))])
    return app
