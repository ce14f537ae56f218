"""The OpenAPI document, completed with what only the settings know.

Agent names are an enum and the chat ``model`` a pattern built from them, so that a
client generated from the document (or a fuzzer) sends only what the service accepts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from shoal.service.models import MODEL_NAME
from shoal.service.settings import ServeSettings


def _literal(name: str) -> str:
    # Agent names are letters, digits, "-", "_" and "."; only "." means more in a regex.
    return re.sub(r"([.])", r"\\\1", name)


def openapi_for(app: FastAPI, settings: ServeSettings) -> Callable[[], dict[str, Any]]:
    def document() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        names = list(settings.agents)
        components = schema.get("components", {}).get("schemas", {})
        execute = components.get("ExecuteRequest", {}).get("properties", {})
        if "agent" in execute:
            execute["agent"]["anyOf"] = [{"type": "string", "enum": names}, {"type": "null"}]
        chat = components.get("ChatRequest", {}).get("properties", {})
        if "model" in chat:
            agents = "|".join(_literal(name) for name in names)
            chat["model"]["pattern"] = f"^(?:{agents})(?:/{MODEL_NAME})?$"
        app.openapi_schema = schema
        return schema

    return document
