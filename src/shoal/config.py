"""shoal's settings: one frozen object, built once per process at the edge.

Layers, highest first: command-line flags, ``SHOAL_*`` environment variables,
``[tool.shoal]`` in ``pyproject.toml`` (or ``shoal_*`` pytest ini keys), defaults.
Every value remembers which layer it came from, so an error can say where to fix it.
"""

from __future__ import annotations

import json
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shoal import conninfo, naming
from shoal.errors import ConfigError, UsageError
from shoal.words import did_you_mean, validation_message

DEFAULT_DATABASE = "default"
POOL_SIZE_MAX = 64  # ready schemas per database: a refill builds at most this many


class DatabaseConfig(BaseModel):
    """One database every worker gets a schema in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str | None = Field(
        default=None,
        description="libpq URL, or `env:VAR`; omitted: a database of this name on the "
        "embedded server",
    )
    setup: str | None = Field(
        default=None,
        description="SQLAlchemy `pkg.mod:metadata`, `alembic:alembic.ini`, `sql:schema.sql` "
        "or `pkg.mod:callable`",
    )
    export_env: tuple[str, ...] = Field(
        default=(),
        description="environment variables set to this database's worker URL (e.g. "
        "DATABASE_URL), in the configured URL's scheme (`postgresql+psycopg://` stays so)",
    )
    extensions: tuple[str, ...] = Field(
        default=(), description="extensions created once per database, outside worker schemas"
    )

    @field_validator("export_env", "extensions", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        # `export_env = "DATABASE_URL"` means the one variable, not its characters.
        return (value,) if isinstance(value, str) else value


class Settings(BaseSettings):
    """Everything shoal can be told. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="SHOAL_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    databases: dict[str, DatabaseConfig] = Field(
        default_factory=lambda: {DEFAULT_DATABASE: DatabaseConfig()},
        description="name → database; the name is the key fixtures and the embedded server use",
    )
    search_path_tail: tuple[str, ...] = Field(
        default=(),
        description="schemas after the worker schema (e.g. `public` for extension functions); "
        "must hold no tables",
    )
    ddl_slots: int | Literal["auto"] = Field(
        default="auto",
        description="concurrent schema DDL per server; `auto` derives it from lock capacity",
    )
    keep_on_failure: bool = Field(
        default=False,
        description="keep worker schemas when the run fails, and print how to connect",
    )
    reports_dir: Path = Field(
        default=Path(".shoal/reports"),
        description="where run reports go (`shoal run`, or `pytest --shoal-report`)",
    )
    home: Path | None = Field(
        default=None, description="the embedded server's data directory (default: user data dir)"
    )
    namespace_force: str | None = Field(
        default=None, description="use this namespace instead of a fresh one (a-z, 0-9, ≤ 32)"
    )
    connect_timeout: int = Field(default=5, ge=1, le=60, description="seconds to wait for a server")
    pool_foreign_days: float = Field(
        default=7,
        ge=0,
        description="another project's ready pool schemas in a shared database are dropped "
        "by a sweep only once this many days old",
    )
    pool_size: int = Field(
        default=2,
        ge=0,
        le=POOL_SIZE_MAX,
        description="ready-made schemas kept warm per database whose setup has a fingerprint; "
        "the background refill after a run keeps at least one per worker of that run that "
        f"provisioned, up to {POOL_SIZE_MAX}; 0 turns the pool off",
    )

    @field_validator("search_path_tail", mode="before")
    @classmethod
    def _tail(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @field_validator("ddl_slots", mode="before")
    @classmethod
    def _slots(cls, value: object) -> object:
        if value == "auto":
            return value
        try:
            number = int(str(value))
        except ValueError:
            number = 0
        if number < 1:
            raise ValueError("expected a positive integer or 'auto'")
        return number

    # Where relative paths (setup files, reports) are resolved; set by the loader.
    project_root: Path = Field(default=Path("."), exclude=True)
    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    def source_of(self, key: str) -> str:
        """Where the value at dotted ``key`` came from (longest known prefix wins)."""
        return _source_for(self._sources, key)

    def sources(self) -> dict[str, str]:
        """Every dotted key given by a layer → that layer."""
        return dict(self._sources)

    @property
    def project(self) -> str:
        """This project's key (its root directory): whose pool schemas are whose."""
        return naming.project_key(str(self.project_root.resolve()))

    def resolve_path(self, path: str | Path) -> Path:
        candidate = Path(path)
        return candidate if candidate.is_absolute() else self.project_root / candidate


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml at or above ``start``."""
    for directory in (start, *start.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def find_project_file(inipath: Path | None, start: Path) -> Path | None:
    """The pyproject.toml whose ``[tool.shoal]`` applies, for pytest and the CLI alike:
    pytest's ini file when it is one, else the nearest at or above ``start``."""
    if inipath is not None and inipath.name == "pyproject.toml":
        return inipath
    return find_pyproject(start)


def _read_pyproject(path: Path) -> dict[str, Any]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        problem = UsageError("[tool.shoal]", str(path), str(path), f"unreadable: {exc}")
        raise ConfigError([problem]) from None
    table = document.get("tool", {}).get("shoal", {})
    if not isinstance(table, dict):
        raise ConfigError([UsageError("tool.shoal", table, str(path), "expected a table")])
    return table


# SHOAL_* variables that are not settings: what shoal passes between its own processes.
_NOT_SETTINGS = ("SHOAL_NAMESPACE", "SHOAL_RUNNER", "SHOAL_PLAN", "SHOAL_REFILL_LOG")


def _read_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``SHOAL_<KEY>`` and ``SHOAL_DATABASES__<NAME>__<KEY>`` variables, as settings values.

    A list may be JSON (``["public", "ext"]``) or plain words (``public,ext``); the
    databases table is JSON. A value that cannot be read is an error naming the variable.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for variable, raw in environ.items():
        if not variable.startswith("SHOAL_"):
            continue
        path = variable.removeprefix("SHOAL_").lower().split("__")
        if path[0] not in Settings.model_fields or path[0] == "project_root":
            continue
        model = DatabaseConfig if path[0] == "databases" and len(path) == 3 else Settings
        kind = (
            typing.get_origin(model.model_fields[path[-1]].annotation)
            if path[-1] in model.model_fields
            else None
        )
        target = values
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = _decode(variable, raw, kind)
    _refuse_near_misses(environ)
    return values


def _decode(variable: str, raw: str, kind: object) -> Any:
    if kind is dict or (kind is tuple and raw.lstrip().startswith("[")):
        try:
            return json.loads(raw)
        except ValueError:
            example = (
                '{"app": {"url": "postgresql://localhost/app"}}' if kind is dict else '["public"]'
            )
            problem = UsageError(
                variable.removeprefix("SHOAL_").lower().replace("__", "."),
                raw,
                f"environment {variable}",
                f"expected JSON, e.g. {example}",
            )
            raise ConfigError([problem]) from None
    if kind is tuple:
        return tuple(raw.replace(",", " ").split())
    return raw


def _refuse_near_misses(environ: Mapping[str, str]) -> None:
    """A SHOAL_* variable one typo away from a setting is a mistake, not someone else's."""
    names = [f"SHOAL_{name.upper()}" for name in Settings.model_fields if name != "project_root"]
    problems = []
    for variable, value in environ.items():
        head = variable.split("__")[0]
        if not variable.startswith("SHOAL_") or head in names or head in _NOT_SETTINGS:
            continue
        hint = did_you_mean(head, names)
        if hint:
            problems.append(
                UsageError(variable, value, f"environment {variable}", f"not a setting{hint}")
            )
    if problems:
        raise ConfigError(problems)


def _record(
    sources: dict[str, str], values: Mapping[str, Any], source: str, prefix: str = ""
) -> None:
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if source == "environment":
            sources[dotted] = "environment SHOAL_" + dotted.replace(".", "__").upper()
        else:
            sources[dotted] = source
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


def load_settings(
    *,
    flags: Mapping[str, Any] | None = None,
    ini: Mapping[str, Any] | None = None,
    pyproject: Path | None = None,
    project_root: Path | None = None,
) -> Settings:
    """Build the settings from every layer, or raise ConfigError naming each bad value."""
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if pyproject is not None:
        layers.append((f"{pyproject.name} [tool.shoal]", _read_pyproject(pyproject)))
    if ini:
        layers.append(("pytest ini", {k: v for k, v in ini.items() if v is not None}))
    layers.append(("environment", _read_env()))
    if flags:
        layers.append(("command line", {k: v for k, v in flags.items() if v is not None}))

    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for label, values in layers:
        merged = _merge(merged, values)
        _record(sources, values, label)

    root = project_root or (pyproject.parent if pyproject else Path.cwd())
    try:
        # init kwargs only: the layers above already include the environment.
        settings = _Validated(**merged, project_root=root)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, merged, sources)) from None
    settings._sources.update(sources)
    _check_semantics(settings)
    return settings


class _Validated(Settings):
    """Settings validated from explicit values only (no second read of the environment)."""

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, *args, **kwargs):  # type: ignore[no-untyped-def]
        return (init_settings,)


def _problems(
    exc: ValidationError, values: Mapping[str, Any], sources: Mapping[str, str]
) -> list[UsageError]:
    # pydantic reports one error per union member, with the member's type in the location;
    # keep the part of the location that exists in the input and join the messages.
    grouped: dict[tuple[int | str, ...], list[str]] = {}
    for error in exc.errors():
        loc = tuple(error["loc"])
        while loc and _value_at(values, loc) is None and len(loc) > 1:
            loc = loc[:-1]
        known = _known_keys(loc)
        message = validation_message(error, known)
        grouped.setdefault(loc, [])
        if message not in grouped[loc]:
            grouped[loc].append(message)
    problems = []
    for loc, messages in grouped.items():
        key = ".".join(str(p) for p in loc)
        value = _value_at(values, loc)
        problems.append(UsageError(key, value, _source_for(sources, key), "; or ".join(messages)))
    return problems


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys that could have been meant at ``loc``: a database's, or the top level's."""
    fields = DatabaseConfig.model_fields if len(loc) >= 3 and loc[0] == "databases" else None
    return list((fields or Settings.model_fields).keys())


def _source_for(sources: Mapping[str, str], key: str) -> str:
    parts = key.split(".")
    while parts:
        found = sources.get(".".join(parts))
        if found is not None:
            return found
        parts.pop()
    return "default"


def _check_semantics(settings: Settings) -> None:
    problems: list[UsageError] = []

    def problem(key: str, value: object, expected: str) -> None:
        problems.append(UsageError(key, value, settings.source_of(key), expected))

    if settings.namespace_force is not None:
        why = naming.forced_namespace_problem(settings.namespace_force)
        if why:
            problem(
                "namespace_force",
                settings.namespace_force,
                f"{why}; expected 1-32 characters from a-z and 0-9 (e.g. 'mydebug')",
            )
    if not settings.databases:
        problem("databases", {}, "expected at least one database")
    for name, database in settings.databases.items():
        why = naming.database_key_problem(name)
        if why:
            problem(f"databases.{name}", name, f"not a usable database name: {why}")
        for variable in database.export_env:
            if not variable.isidentifier():
                problem(
                    f"databases.{name}.export_env", variable, "expected environment variable names"
                )
        for extension in database.extensions:
            if naming.schema_name_problem(extension.replace("-", "_")):
                problem(f"databases.{name}.extensions", extension, "expected extension names")
        url = database.url
        if url is not None and not (url.startswith("env:") or conninfo.is_postgres_url(url)):
            problem(
                f"databases.{name}.url",
                conninfo.mask(url),
                "expected a postgresql:// URL (a driver such as postgresql+psycopg:// is kept "
                "in exported variables), env:VARIABLE, or nothing for the embedded server",
            )
    for schema in settings.search_path_tail:
        why = naming.schema_name_problem(schema)
        if why:
            problem("search_path_tail", schema, why)
    if problems:
        raise ConfigError(problems)


def settings_table() -> str:
    """The README's configuration table, generated from the models so it cannot drift."""
    rows = ["| key | env | default | meaning |", "|---|---|---|---|"]
    for name, info in Settings.model_fields.items():
        if name == "project_root":
            continue
        default = "`{default: {}}`" if name == "databases" else f"`{info.get_default()}`"
        env = f"`SHOAL_{name.upper()}`"
        rows.append(f"| `{name}` | {env} | {default} | {info.description} |")
    for name, info in DatabaseConfig.model_fields.items():
        env = f"`SHOAL_DATABASES__<NAME>__{name.upper()}`"
        rows.append(
            f"| `databases.<name>.{name}` | {env} | `{info.get_default()}` | {info.description} |"
        )
    return "\n".join(rows) + "\n"
