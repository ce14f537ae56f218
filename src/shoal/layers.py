"""Settings from layers, each value remembering where it came from: one loader for
``shoal`` (flags, ``SHOAL_*``, ``[tool.shoal]``, ini keys) and ``shoal serve`` (flags,
``SHOAL_SERVE_*``).

Layers are merged lowest first; a value of a higher layer replaces the lower one's, a
table merges key by key. Every dotted key records its layer's label, so an error can say
where to fix it. The models are plain pydantic models: nothing reads the environment
but :func:`environment`, which knows which variables are settings and reads them once.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from shoal.errors import ConfigError, UsageError
from shoal.words import did_you_mean, validation_message

# pydantic is imported where settings are validated: a process that only reads a run plan
# (every xdist worker) needs this module's source_of, and not pydantic's import time.
if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound="BaseModel")
Source = Callable[[str], str]  # dotted key → where its value came from


class Layers:
    """Values merged layer by layer, with the source of every dotted key."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.sources: dict[str, str] = {}

    def add(self, values: Mapping[str, Any], source: str | Source, *, whole: bool = False) -> None:
        """Put ``values`` over what is there. ``whole``: a table replaces the lower
        layer's instead of merging into it (``--agent`` flags replace the agents)."""
        given = {k: v for k, v in values.items() if v is not None}
        label = source if callable(source) else (lambda _key: str(source))
        if whole:
            self.values = {**self.values, **given}
            for key in given:
                prefix = f"{key}."
                self.sources = {k: v for k, v in self.sources.items() if not k.startswith(prefix)}
        else:
            self.values = _merge(self.values, given)
        _record(self.sources, given, label)

    def source_of(self, key: str) -> str:
        return source_of(self.sources, key)

    def validate(
        self,
        model: type[M],
        *,
        known: Callable[[tuple[int | str, ...]], Iterable[str]],
        shown: Callable[[str, object], object] = lambda _key, value: value,
        missing: Callable[[str], str] = lambda key: "required",
        extra: Mapping[str, Any] | None = None,
    ) -> M:
        """``model`` from the merged values, or ConfigError with one plain-word problem per
        bad key: ``known(loc)`` lists the keys a near miss could have meant, ``shown``
        masks a value for messages, ``missing`` says how to give a required key."""
        from pydantic import ValidationError

        try:
            return model(**self.values, **(extra or {}))
        except ValidationError as exc:
            raise ConfigError(self._problems(exc, known, shown, missing)) from None

    def _problems(
        self,
        exc: ValidationError,
        known: Callable[[tuple[int | str, ...]], Iterable[str]],
        shown: Callable[[str, object], object],
        missing: Callable[[str], str],
    ) -> list[UsageError]:
        # pydantic reports one error per union member, with the member's type in the
        # location; keep the part of the location that is in the input, join the messages.
        grouped: dict[tuple[int | str, ...], list[str]] = {}
        for error in exc.errors():
            loc = tuple(error["loc"])
            while loc and _value_at(self.values, loc) is None and len(loc) > 1:
                loc = loc[:-1]
            key = ".".join(str(p) for p in loc)
            if error["type"] == "missing":
                message = missing(key)
            else:
                message = validation_message(error, known(loc))
            messages = grouped.setdefault(loc, [])
            if message not in messages:
                messages.append(message)
        problems = []
        for loc, messages in grouped.items():
            key = ".".join(str(p) for p in loc)
            value = shown(key, _value_at(self.values, loc))
            problems.append(UsageError(key, value, self.source_of(key), "; or ".join(messages)))
        return problems


def source_of(sources: Mapping[str, str], key: str) -> str:
    """The source of dotted ``key``: that of its longest recorded prefix; "default" if none."""
    parts = key.split(".")
    while parts:
        found = sources.get(".".join(parts))
        if found is not None:
            return found
        parts.pop()
    return "default"


def environment(
    prefix: str,
    model: type[BaseModel],
    environ: Mapping[str, str],
    *,
    tables: Mapping[str, type[BaseModel]] | None = None,
    not_settings: Iterable[str] = (),
    examples: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``<PREFIX><KEY>`` variables (and ``<PREFIX><TABLE>__<NAME>__<KEY>`` for the keys of
    ``tables``, e.g. databases) as settings values.

    A table is JSON; a list is JSON when it starts with ``[`` (otherwise the model's
    validators read the plain string, e.g. comma-separated words). A variable one typo
    away from a setting is an error, not someone else's variable, unless it starts with
    one of ``not_settings`` (the variables shoal passes itself). ``examples``: a JSON
    example per key, for the message when its value is not JSON.
    """
    tables = tables or {}
    names = {f"{prefix}{name.upper()}" for name in model.model_fields}
    values: dict[str, Any] = {}
    problems: list[UsageError] = []
    for variable, raw in environ.items():
        if not variable.startswith(prefix):
            continue
        path = variable.removeprefix(prefix).lower().split("__")
        if path[0] not in model.model_fields:
            head = variable.split("__")[0]
            hint = did_you_mean(head, sorted(names))
            if hint and not head.startswith(tuple(not_settings)):
                problems.append(
                    UsageError(variable, raw, f"environment {variable}", f"not a setting{hint}")
                )
            continue
        fields = model.model_fields
        if len(path) == 3 and path[0] in tables:
            fields = tables[path[0]].model_fields
        field = fields.get(path[-1])
        kind = typing.get_origin(field.annotation) if field is not None else None
        target = values
        for part in path[:-1]:
            target = target.setdefault(part, {})
        try:
            target[path[-1]] = _decode(raw, kind)
        except ValueError:
            key = ".".join(path)
            default = '{"name": {…}}' if kind is dict else '["one", "two"]'
            example = (examples or {}).get(key, default)
            expected = f"expected JSON, e.g. {example}"
            problems.append(UsageError(key, raw, f"environment {variable}", expected))
    if problems:
        raise ConfigError(problems)
    return values


def environment_source(prefix: str) -> Source:
    """Where a dotted key read by :func:`environment` came from."""
    return lambda key: f"environment {prefix}{key.replace('.', '__').upper()}"


def _decode(raw: str, kind: object) -> Any:
    if kind is dict or (kind in (tuple, list) and raw.lstrip().startswith("[")):
        return json.loads(raw)
    return raw


def _record(
    sources: dict[str, str], values: Mapping[str, Any], source: Source, prefix: str = ""
) -> None:
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        sources[dotted] = source(dotted)
        if isinstance(value, Mapping):
            _record(sources, value, source, f"{dotted}.")


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _value_at(values: Mapping[str, Any], loc: tuple[int | str, ...]) -> Any:
    current: Any = values
    for part in loc:
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        else:
            return None
    return current
