"""The OpenAPI document tells the truth: schemathesis, every check, against a real server.

Each operation gets a bounded number of generated requests (valid and invalid ones);
every answer must be one the document lists, in the shape it gives. The agents are
plain commands that read their prompt on stdin, so no generated prompt can make one
wait or loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks

from shoal.service.app import create_app
from tests.service.conftest import TOKEN, free_port, make_repo, settings_for

AUTH = {"Authorization": f"Bearer {TOKEN}"}
load_all_checks()  # the OpenAPI checks register on import
EVERY_CHECK = [
    check for check in CHECKS.get_all() if callable(check) and not isinstance(check, type)
]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("openapi")
    origin = make_repo(root / "origin")
    agents = {"tee": ["tee", "out.txt"], "cat": ["cat"]}
    app = create_app(
        settings_for(
            root,
            origin,
            agents=agents,
            max_queue_depth=10_000,
            default_timeout_s=10,
            keepalive_s=5,
            reattach_s=1,
        )
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        assert time.monotonic() < deadline, "the server did not start in time"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def api(base_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{base_url}/openapi.json", headers=AUTH)


OPERATIONS = [
    ("/execute", "POST"),
    ("/jobs", "GET"),
    ("/jobs/{job_id}", "GET"),
    ("/jobs/{job_id}/cancel", "POST"),
    ("/jobs/{job_id}/events", "GET"),
    ("/v1/models", "GET"),
    ("/v1/models/{model_id}", "GET"),
    ("/v1/chat/completions", "POST"),
]


CASES = [
    ("/health", "GET", GenerationMode.POSITIVE),  # it takes nothing that could be invalid
    *((path, method, mode) for path, method in OPERATIONS for mode in GenerationMode),
]


@pytest.mark.parametrize(("path", "method", "mode"), CASES)
def test_every_answer_is_one_the_document_lists(
    api: schemathesis.BaseSchema, path: str, method: str, mode: GenerationMode
) -> None:
    operation = api[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=12,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=True,
    )
    def answers(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(headers=AUTH, checks=EVERY_CHECK, timeout=30)

    answers()


def test_every_check_runs() -> None:
    names = {check.__name__ for check in EVERY_CHECK}
    assert {
        "positive_data_acceptance",
        "negative_data_rejection",
        "status_code_conformance",
        "response_schema_conformance",
        "ignored_auth",
    } <= names, names


def test_the_document_names_agents_errors_and_the_model_pattern(
    api: schemathesis.BaseSchema,
) -> None:
    document = api.raw_schema
    schemas = document["components"]["schemas"]
    agent = schemas["ExecuteRequest"]["properties"]["agent"]
    assert {"type": "string", "enum": ["tee", "cat"]} in agent["anyOf"]
    assert schemas["ChatRequest"]["properties"]["model"]["pattern"].startswith("^(?:tee|cat)")
    for path, codes in (
        ("/execute", {"401", "413", "422", "429", "503"}),
        ("/v1/chat/completions", {"400", "401", "404", "422", "429", "502", "503", "504"}),
    ):
        post = document["paths"][path]["post"]["responses"]
        assert codes <= set(post), (path, sorted(post))
