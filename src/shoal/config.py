"""shoal's settings: one frozen object, built once per process at the edge.

Layers, highest first: command-line flags, ``SHOAL_*`` environment variables,
``[tool.shoal]`` in ``pyproject.toml`` (or ``shoal_*`` pytest ini keys), defaults.
Every value remembers which layer it came from, so an error can say where to fix it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from shoal import conninfo, defaults, naming
from shoal.errors import ConfigError, UsageError
from shoal.given import NOT_SETTINGS, read_table
from shoal.layers import Layers, environment, environment_source, source_of

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
        return words(value)


class Settings(BaseModel):
    """Everything shoal can be told. Build it with :func:`load_settings`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

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
        default=defaults.DDL_SLOTS,
        description="concurrent schema DDL per server; `auto` derives it from lock capacity",
    )
    keep_on_failure: bool = Field(
        default=False,
        description="keep worker schemas when the run fails, and print how to connect",
    )
    reports_dir: Path = Field(
        default=Path(defaults.REPORTS_DIR),
        description="where run reports go (`shoal run`, or `pytest --shoal-report`)",
    )
    home: Path | None = Field(
        default=None, description="the embedded server's data directory (default: user data dir)"
    )
    namespace_force: str | None = Field(
        default=None, description="use this namespace instead of a fresh one (a-z, 0-9, ≤ 32)"
    )
    connect_timeout: int = Field(
        default=defaults.CONNECT_TIMEOUT_S, ge=1, le=60, description="seconds to wait for a server"
    )
    pool_foreign_days: float = Field(
        default=7,
        ge=0,
        description="another project's ready pool schemas in a shared database are dropped "
        "by a sweep only once this many days old",
    )
    pool_size: int = Field(
        default=defaults.POOL_SIZE,
        ge=0,
        le=POOL_SIZE_MAX,
        description="ready-made schemas kept warm per database whose setup has a fingerprint; "
        "the background refill after a run keeps at least one per worker of that run that "
        f"provisioned, up to {POOL_SIZE_MAX}; 0 turns the pool off",
    )

    django_databases: dict[str, str] = Field(
        default_factory=dict,
        description="Django alias → the name its test database goes by in shoal (reports, "
        "`shoal ps`, the sweep); default: the alias (pytest-django needs no config)",
    )
    django_mode: Literal["schema", "database"] = Field(
        default="schema",
        description="Django: `schema` gives each worker a schema in Django's test database; "
        "`database` a whole database `test_<name>_<namespace>_<worker>`, cloned from a "
        "template migrated once per fingerprint (the role needs CREATEDB)",
    )

    @field_validator("search_path_tail", mode="before")
    @classmethod
    def _tail(cls, value: object) -> object:
        return words(value)

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
        return source_of(self._sources, key)

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


def words(value: object) -> object:
    """A plain string as the list it names: ``"public, ext"`` → ``("public", "ext")``;
    ``export_env = "DATABASE_URL"`` means the one variable, not its characters."""
    return tuple(value.replace(",", " ").split()) if isinstance(value, str) else value


def load_settings(
    *,
    flags: Mapping[str, Any] | None = None,
    ini: Mapping[str, Any] | None = None,
    pyproject: Path | None = None,
    project_root: Path | None = None,
) -> Settings:
    """Build the settings from every layer, or raise ConfigError naming each bad value."""
    layers = Layers()
    if pyproject is not None:
        layers.add(read_table(pyproject), f"{pyproject.name} [tool.shoal]")
    if ini:
        layers.add(ini, "pytest ini")
    env = environment(
        "SHOAL_",
        Settings,
        os.environ,
        tables={"databases": DatabaseConfig},
        not_settings=NOT_SETTINGS,
        examples={"databases": '{"app": {"url": "postgresql://localhost/app"}}'},
    )
    env.pop("project_root", None)
    layers.add(env, environment_source("SHOAL_"))
    if flags:
        layers.add(flags, "command line")
    root = project_root or (pyproject.parent if pyproject else Path.cwd())
    settings = layers.validate(Settings, known=_known_keys, extra={"project_root": root})
    settings._sources.update(layers.sources)
    _check_semantics(settings)
    return settings


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys that could have been meant at ``loc``: a database's, or the top level's."""
    nested = len(loc) >= 3 and loc[0] == "databases"
    fields = DatabaseConfig.model_fields if nested else Settings.model_fields
    return [name for name in fields if name != "project_root"]


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
    for alias, name in settings.django_databases.items():
        why = naming.database_key_problem(name)
        if why:
            problem(f"django_databases.{alias}", name, f"not a usable database name: {why}")
    if problems:
        raise ConfigError(problems)


def settings_table() -> str:
    """The README's configuration table, generated from the models so it cannot drift."""
    rows = ["| key | env | default | meaning |", "|---|---|---|---|"]
    for name, info in Settings.model_fields.items():
        if name == "project_root":
            continue
        default = (
            "`{default: {}}`"
            if name == "databases"
            else f"`{info.get_default(call_default_factory=True)}`"
        )
        env = f"`SHOAL_{name.upper()}`"
        rows.append(f"| `{name}` | {env} | {default} | {info.description} |")
    for name, info in DatabaseConfig.model_fields.items():
        env = f"`SHOAL_DATABASES__<NAME>__{name.upper()}`"
        rows.append(
            f"| `databases.<name>.{name}` | {env} | `{info.get_default()}` | {info.description} |"
        )
    return "\n".join(rows) + "\n"
