"""Request and response shapes of the job service (FastAPI turns them into the OpenAPI schema)."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# A ref reaches git as an argument: a leading "-" would be read as an option. Matched
# whole (fullmatch): "$" alone would let a trailing newline through.
# No lookarounds, so the OpenAPI document states the same rule in any regex dialect: each
# "." is followed by a name character (or ends the ref), and the first is not "-".
_REF_CHAR = r"[A-Za-z0-9_/@{}^~+-]"
REF_PATTERN = rf"^(?:[A-Za-z0-9_/@{{}}^~+]|\.{_REF_CHAR})(?:{_REF_CHAR}|\.{_REF_CHAR})*\.?$"
_REF = re.compile(REF_PATTERN)
NO_NUL = r"^[^\x00]*$"
# A model name may reach the agent's argv: no leading "-", nothing a shell would care about.
MODEL_NAME = r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}"
_MODEL = re.compile(rf"{MODEL_NAME}(?:/{MODEL_NAME})?")
# One limit for every prompt, /execute's and a rendered chat conversation alike.
MAX_PROMPT_CHARS = 1_000_000
MetadataValue = str | int | float | bool | None


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    completed = "completed"
    failed = "failed"
    timed_out = "timed_out"
    cancelled = "cancelled"
    interrupted = "interrupted"

    @property
    def finished(self) -> bool:
        return self not in (JobStatus.queued, JobStatus.running)


def _no_nul(value: str) -> str:
    # Arguments and environment values cannot carry NUL bytes; refuse rather than truncate.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


class ExecuteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(
        min_length=1, max_length=MAX_PROMPT_CHARS, json_schema_extra={"pattern": NO_NUL}
    )
    agent: str | None = Field(default=None, description="agent name (default: the server's)")
    ref: str | None = Field(
        default=None,
        max_length=200,
        json_schema_extra={"pattern": REF_PATTERN},
        description="branch, tag or commit to check out",
    )
    timeout_s: float | None = Field(
        default=None, gt=0, le=7 * 86400, description="run time limit, counted from the start"
    )
    metadata: dict[str, MetadataValue] | None = Field(default=None, max_length=100)
    save_branch: bool = Field(
        default=False, description="keep the job's changes as branch shoal/job-<id> in the base"
    )

    _prompt = field_validator("prompt")(_no_nul)

    @field_validator("ref")
    @classmethod
    def _ref(cls, value: str | None) -> str | None:
        if value is not None and not _REF.fullmatch(value):
            raise ValueError("expected a branch, tag or commit name (no leading '-', no '..')")
        return value


class DiffFile(BaseModel):
    path: str
    insertions: int
    deletions: int


class DiffSummary(BaseModel):
    files_changed: int
    insertions: int
    deletions: int
    files: list[DiffFile] = Field(description="the first 200 files")


class Accepted(BaseModel):
    job_id: str
    status: JobStatus
    position: int = Field(description="1 = next to start; 0 = already running")


class JobView(BaseModel):
    job_id: str
    kind: Literal["execute", "chat"]
    status: JobStatus
    agent: str
    ref: str | None
    metadata: dict[str, MetadataValue] | None
    exit_code: int | None
    output: str
    output_truncated: bool
    stderr: str
    error: str | None
    queued_at: float
    started_at: float | None
    finished_at: float | None
    position: int | None
    workspace: str | None = Field(description="the checkout while the job runs")
    node: str | None = Field(default=None, description="the node that runs or ran the job")
    diff: DiffSummary | None
    branch: str | None


class JobList(BaseModel):
    jobs: list[JobView]  # in the order they were submitted
    # Pass as ``after`` for the next page; null on the last page. A position in the
    # submission order, not a job id: it stays valid when that job is evicted.
    next: int | None = None


class NodeHealth(BaseModel):
    node: str
    host: str
    alive: bool = Field(description="its heartbeat is younger than node_timeout_s")
    heartbeat_age_s: float
    running: int
    capacity: int


class FleetHealth(BaseModel):
    nodes: list[NodeHealth] = Field(description="every node seen lately, this one included")
    running: int
    queued: int = Field(description="jobs waiting in the line all nodes share")
    capacity: int = Field(description="the slots of the nodes alive")


class Health(BaseModel):
    status: Literal["ok"]
    busy: bool
    active: int = Field(description="jobs running on this node")
    queued: int = Field(description="jobs waiting in line (the fleet's line, with --queue)")
    capacity: int = Field(description="this node's slots")
    node: str = Field(description="this node's name")
    fleet: FleetHealth | None = Field(
        default=None, description="with --queue: the nodes sharing the queue"
    )


class ContentPart(BaseModel):
    type: str
    text: str | None = Field(default=None, json_schema_extra={"pattern": NO_NUL})


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = Field(
        default=None, json_schema_extra={"pattern": NO_NUL}
    )

    def texts(self) -> list[str]:
        if isinstance(self.content, list):
            return [part.text for part in self.content if part.text is not None]
        return [self.content or ""]

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""


# The rule "some user message says something", as JSON Schema and as the validator.
_SPOKEN_TEXT = re.compile(r"\S")
_SPOKEN: dict[str, Any] = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"const": "user"},
        "content": {
            "anyOf": [
                {"type": "string", "pattern": _SPOKEN_TEXT.pattern},
                {
                    "type": "array",
                    "contains": {
                        "type": "object",
                        "required": ["type", "text"],
                        "properties": {
                            "type": {"const": "text"},
                            "text": {"type": "string", "pattern": _SPOKEN_TEXT.pattern},
                        },
                    },
                },
            ]
        },
    },
}


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    # OpenAI clients send many optional knobs (temperature, …); they mean nothing here.
    model_config = ConfigDict(extra="ignore")

    model: str = Field(
        min_length=1,
        description="an agent name, or AGENT/MODEL: the agent, given MODEL as {model}",
    )
    messages: list[ChatMessage] = Field(min_length=1, json_schema_extra={"contains": _SPOKEN})
    stream: bool = False
    stream_options: StreamOptions | None = None
    # Refused with 400 by the handler when other than one answer / any tool is asked for.
    n: int | None = Field(default=None, json_schema_extra={"enum": [1]})
    tools: list[Any] | None = Field(default=None, json_schema_extra={"maxItems": 0})

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        if not _MODEL.fullmatch(value):
            raise ValueError("expected an agent name or AGENT/MODEL (letters, digits, . _ : @ + -)")
        return value

    @field_validator("messages")
    @classmethod
    def _has_user(cls, value: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.role == "user" and _SPOKEN_TEXT.search(m.text()) for m in value):
            raise ValueError("expected a user message with text content")
        for message in value:
            for text in message.texts():
                _no_nul(text)
        if sum(len(m.text()) for m in value) > MAX_PROMPT_CHARS:
            raise ValueError(f"expected at most {MAX_PROMPT_CHARS} characters in all")
        return value

    @property
    def agent(self) -> str:
        return self.model.partition("/")[0]

    def prompt(self) -> str:
        """The conversation as the agent reads it in plain text.

        A lone user message is passed as it is. Otherwise every message, in order, as a
        ``### <role>`` line followed by its text and a blank line.
        """
        if len(self.messages) == 1:
            return self.messages[0].text()
        return "\n".join(f"### {m.role}\n{m.text()}\n" for m in self.messages)

    def conversation(self) -> list[dict[str, str]]:
        """The conversation as agents that take JSON on stdin read it."""
        return [{"role": m.role, "content": m.text()} for m in self.messages]


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail


class ErrorDetail(BaseModel):
    detail: str | list[dict[str, Any]]
    message: str | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def chat_error(message: str, kind: str, code: str, param: str | None = None) -> dict[str, Any]:
    """The OpenAI error body."""
    return {"error": {"message": message, "type": kind, "code": code, "param": param}}
