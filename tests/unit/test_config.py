"""shoal.config: layered settings, where each value came from, and clear errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from shoal.config import DatabaseConfig, Settings, load_settings
from shoal.errors import ConfigError, UsageError
from shoal.plugin.state import INI_KEYS

PYPROJECT = "pyproject.toml [tool.shoal]"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SHOAL_* variable of the surrounding shell (SHOAL_HOME, ...) leaks into a test."""
    for name in list(os.environ):
        if name.upper().startswith("SHOAL_"):
            monkeypatch.delenv(name)


def write_pyproject(directory: Path, body: str) -> Path:
    path = directory / "pyproject.toml"
    path.write_text(body, encoding="utf-8")
    return path


def only_problem(exc: pytest.ExceptionInfo[ConfigError]) -> UsageError:
    assert len(exc.value.problems) == 1, str(exc.value)
    return exc.value.problems[0]


def assert_names_everything(problem: UsageError, *, key: str, value: Any, source: str) -> None:
    assert (problem.key, problem.value, problem.source) == (key, value, source)
    message = str(problem)
    assert key in message
    assert repr(value) in message
    assert source in message
    assert problem.expected in message


# -- layers -------------------------------------------------------------------------------


def test_no_configuration_gives_one_default_database_on_the_embedded_server() -> None:
    settings = load_settings()

    assert settings.databases == {"default": DatabaseConfig()}
    assert settings.databases["default"].url is None
    assert settings.ddl_slots == "auto"
    assert settings.namespace_force is None
    for key in ("databases", "databases.default.url", "ddl_slots", "keep_on_failure"):
        assert settings.source_of(key) == "default"


def test_pyproject_without_a_shoal_table_changes_nothing(tmp_path: Path) -> None:
    pyproject = write_pyproject(tmp_path, '[project]\nname = "x"\n')

    settings = load_settings(pyproject=pyproject)

    assert settings.databases == {"default": DatabaseConfig()}
    assert settings.source_of("databases") == "default"
    assert settings.project_root == tmp_path


@pytest.mark.parametrize(
    ("in_pyproject", "in_env", "on_command_line", "expected", "source"),
    [
        (None, None, None, "auto", "default"),
        (2, None, None, 2, PYPROJECT),
        (2, "3", None, 3, "environment SHOAL_DDL_SLOTS"),
        (None, "3", None, 3, "environment SHOAL_DDL_SLOTS"),
        (2, "3", 4, 4, "command line"),
        (2, None, 4, 4, "command line"),
        (None, None, "auto", "auto", "command line"),
    ],
)
def test_precedence_flags_over_environment_over_pyproject_over_default(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    in_pyproject: int | None,
    in_env: str | None,
    on_command_line: int | str | None,
    expected: int | str,
    source: str,
) -> None:
    body = "[tool.shoal]\n" + (f"ddl_slots = {in_pyproject}\n" if in_pyproject else "")
    if in_env is not None:
        monkeypatch.setenv("SHOAL_DDL_SLOTS", in_env)

    settings = load_settings(
        flags={"ddl_slots": on_command_line}, pyproject=write_pyproject(tmp_path, body)
    )

    assert settings.ddl_slots == expected
    assert settings.source_of("ddl_slots") == source


def test_a_flag_left_unset_does_not_hide_lower_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_KEEP_ON_FAILURE", "true")

    settings = load_settings(flags={"keep_on_failure": None, "ddl_slots": None})

    assert settings.keep_on_failure is True
    assert settings.source_of("keep_on_failure") == "environment SHOAL_KEEP_ON_FAILURE"
    assert settings.source_of("ddl_slots") == "default"


def test_pytest_ini_sits_between_pyproject_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pyproject = write_pyproject(tmp_path, "[tool.shoal]\nddl_slots = 2\nconnect_timeout = 7\n")
    monkeypatch.setenv("SHOAL_CONNECT_TIMEOUT", "9")

    settings = load_settings(ini={"ddl_slots": "3", "connect_timeout": "8"}, pyproject=pyproject)

    assert (settings.ddl_slots, settings.source_of("ddl_slots")) == (3, "pytest ini")
    assert settings.connect_timeout == 9
    assert settings.source_of("connect_timeout") == "environment SHOAL_CONNECT_TIMEOUT"


def test_each_key_remembers_its_own_layer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pyproject = write_pyproject(
        tmp_path, '[tool.shoal]\nsearch_path_tail = ["public"]\nddl_slots = 2\n'
    )
    monkeypatch.setenv("SHOAL_DDL_SLOTS", "5")

    settings = load_settings(flags={"keep_on_failure": True}, pyproject=pyproject)

    assert settings.search_path_tail == ("public",)
    assert settings.source_of("search_path_tail") == PYPROJECT
    assert settings.source_of("ddl_slots") == "environment SHOAL_DDL_SLOTS"
    assert settings.source_of("keep_on_failure") == "command line"
    assert settings.source_of("connect_timeout") == "default"


def test_nested_environment_variables_configure_a_database(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHOAL_DATABASES__APP__URL", "postgresql://app@db.example.com/app")

    settings = load_settings()

    assert settings.databases == {"app": DatabaseConfig(url="postgresql://app@db.example.com/app")}
    assert settings.source_of("databases.app.url") == "environment SHOAL_DATABASES__APP__URL"


def test_environment_merges_into_a_database_from_pyproject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pyproject = write_pyproject(
        tmp_path,
        '[tool.shoal.databases.app]\nsetup = "sql:schema.sql"\nurl = "env:APP_URL"\n',
    )
    monkeypatch.setenv("SHOAL_DATABASES__APP__URL", "postgresql://localhost/app")

    settings = load_settings(pyproject=pyproject)

    app = settings.databases["app"]
    assert (app.url, app.setup) == ("postgresql://localhost/app", "sql:schema.sql")
    assert settings.source_of("databases.app.url") == "environment SHOAL_DATABASES__APP__URL"
    assert settings.source_of("databases.app.setup") == PYPROJECT


def test_variables_that_carry_names_between_processes_are_not_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `shoal run` exports these; the test suite of shoal itself uses the last one.
    monkeypatch.setenv("SHOAL_NAMESPACE", "p1t2r0123abcd")
    monkeypatch.setenv("SHOAL_RUNNER", "1:2.00")
    monkeypatch.setenv("SHOAL_TEST_EXTERNAL_URL", "postgresql://localhost/x")

    settings = load_settings()

    assert settings.namespace_force is None
    assert settings.databases == {"default": DatabaseConfig()}


@pytest.mark.parametrize("url", ["postgresql://h/db", "postgres://h/db", "env:APP_URL"])
def test_accepted_database_urls(tmp_path: Path, url: str) -> None:
    pyproject = write_pyproject(tmp_path, f'[tool.shoal.databases.app]\nurl = "{url}"\n')

    assert load_settings(pyproject=pyproject).databases["app"].url == url


def test_a_valid_forced_namespace_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_NAMESPACE_FORCE", "mydebug")

    settings = load_settings()

    assert settings.namespace_force == "mydebug"
    assert settings.source_of("namespace_force") == "environment SHOAL_NAMESPACE_FORCE"


def test_relative_paths_resolve_against_the_project(tmp_path: Path) -> None:
    settings = load_settings(pyproject=write_pyproject(tmp_path, "[tool.shoal]\n"))

    assert settings.resolve_path("schema.sql") == tmp_path / "schema.sql"
    assert settings.resolve_path("/abs/schema.sql") == Path("/abs/schema.sql")


def test_settings_are_frozen() -> None:
    settings = load_settings(flags={"ddl_slots": 2})

    with pytest.raises(ValidationError, match="frozen"):
        settings.ddl_slots = 3
    with pytest.raises(ValidationError, match="frozen"):
        settings.databases["default"].url = "postgresql://h/db"
    assert isinstance(settings, Settings)


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["x", "0", "-1", "1.5", "Auto"])
def test_bad_ddl_slots_from_the_environment(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SHOAL_DDL_SLOTS", value)

    with pytest.raises(ConfigError) as exc:
        load_settings()

    problem = only_problem(exc)
    assert_names_everything(
        problem, key="ddl_slots", value=value, source="environment SHOAL_DDL_SLOTS"
    )
    assert "positive integer or 'auto'" in problem.expected


@pytest.mark.parametrize("value", ['"x"', "0", "-1"])
def test_bad_ddl_slots_from_pyproject(tmp_path: Path, value: str) -> None:
    pyproject = write_pyproject(tmp_path, f"[tool.shoal]\nddl_slots = {value}\n")

    with pytest.raises(ConfigError) as exc:
        load_settings(pyproject=pyproject)

    problem = only_problem(exc)
    expected_value = value.strip('"') if value.startswith('"') else int(value)
    assert_names_everything(problem, key="ddl_slots", value=expected_value, source=PYPROJECT)


@pytest.mark.parametrize("value", ["x", 0, -1])
def test_bad_ddl_slots_from_the_command_line(value: str | int) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(flags={"ddl_slots": value})

    assert_names_everything(only_problem(exc), key="ddl_slots", value=value, source="command line")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("my_debug", "underscore"),
        ("my-debug", "hyphen"),
        ("MyDebug", "capital"),
        ("a" * 33, "33 characters"),
        ("", "empty"),
        ("débug", "non-ASCII"),
    ],
)
def test_bad_forced_namespace(monkeypatch: pytest.MonkeyPatch, value: str, reason: str) -> None:
    monkeypatch.setenv("SHOAL_NAMESPACE_FORCE", value)

    with pytest.raises(ConfigError) as exc:
        load_settings()

    problem = only_problem(exc)
    assert_names_everything(
        problem, key="namespace_force", value=value, source="environment SHOAL_NAMESPACE_FORCE"
    )
    assert reason in problem.expected
    assert "a-z and 0-9" in problem.expected


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("Bad-Name", "lower-case letters"),
        ("1abc", "not starting with a digit"),
        ("a" * 64, "64 bytes"),
    ],
)
def test_database_key_postgresql_would_reject(tmp_path: Path, name: str, reason: str) -> None:
    pyproject = write_pyproject(tmp_path, f'[tool.shoal.databases."{name}"]\n')

    with pytest.raises(ConfigError) as exc:
        load_settings(pyproject=pyproject)

    problem = only_problem(exc)
    assert_names_everything(problem, key=f"databases.{name}", value=name, source=PYPROJECT)
    assert reason in problem.expected


def test_database_key_from_the_environment_is_checked_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHOAL_DATABASES__MY-APP__URL", "postgresql://localhost/app")

    with pytest.raises(ConfigError) as exc:
        load_settings()

    problem = only_problem(exc)
    assert problem.key == "databases.my-app"
    assert problem.source.startswith("environment SHOAL_DATABASES__MY-APP")


@pytest.mark.parametrize(
    "url", ["mysql://h/db", "localhost:5432/db", "postgresql:/h/db", "sqlite:///x.db"]
)
def test_database_url_that_is_not_postgresql_or_env(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("SHOAL_DATABASES__APP__URL", url)

    with pytest.raises(ConfigError) as exc:
        load_settings()

    problem = only_problem(exc)
    assert_names_everything(
        problem, key="databases.app.url", value=url, source="environment SHOAL_DATABASES__APP__URL"
    )
    assert "postgresql://" in problem.expected
    assert "env:" in problem.expected


def test_rejected_database_url_does_not_leak_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHOAL_DATABASES__APP__URL", "postgressql://app:s3cret@db/app")

    with pytest.raises(ConfigError) as exc:
        load_settings()

    assert "s3cret" not in str(exc.value)


def test_unknown_key_in_tool_shoal(tmp_path: Path) -> None:
    pyproject = write_pyproject(tmp_path, "[tool.shoal]\nddl_slot = 2\n")

    with pytest.raises(ConfigError) as exc:
        load_settings(pyproject=pyproject)

    problem = only_problem(exc)
    assert_names_everything(problem, key="ddl_slot", value=2, source=PYPROJECT)
    assert problem.expected == "not a setting shoal knows (did you mean `ddl_slots`?)"


def test_unknown_key_in_a_database_table(tmp_path: Path) -> None:
    pyproject = write_pyproject(tmp_path, '[tool.shoal.databases.app]\nsetpu = "sql:x.sql"\n')

    with pytest.raises(ConfigError) as exc:
        load_settings(pyproject=pyproject)

    assert_names_everything(
        only_problem(exc), key="databases.app.setpu", value="sql:x.sql", source=PYPROJECT
    )


def test_every_bad_value_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_DDL_SLOTS", "0")
    monkeypatch.setenv("SHOAL_CONNECT_TIMEOUT", "0")

    with pytest.raises(ConfigError) as exc:
        load_settings()

    assert sorted(p.key for p in exc.value.problems) == ["connect_timeout", "ddl_slots"]
    assert len(str(exc.value).splitlines()) == 2


def test_malformed_toml(tmp_path: Path) -> None:
    pyproject = write_pyproject(tmp_path, "[tool.shoal\nddl_slots = 2\n")

    with pytest.raises(ConfigError) as exc:
        load_settings(pyproject=pyproject)

    problem = only_problem(exc)
    assert str(pyproject) in problem.source
    assert "unreadable" in problem.expected
    assert "line 1" in problem.expected


def test_tool_shoal_that_is_not_a_table(tmp_path: Path) -> None:
    pyproject = write_pyproject(tmp_path, '[tool]\nshoal = "yes"\n')

    with pytest.raises(ConfigError) as exc:
        load_settings(pyproject=pyproject)

    problem = only_problem(exc)
    assert (problem.key, problem.value) == ("tool.shoal", "yes")
    assert "table" in problem.expected


def test_every_pytest_ini_key_is_a_setting() -> None:
    assert set(INI_KEYS) <= set(Settings.model_fields)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("SHOAL_CONNECT_TIMEOUT", "soon", "expected a whole number, e.g. 5"),
        ("SHOAL_KEEP_ON_FAILURE", "maybe", "expected true or false"),
        ("SHOAL_POOL_SIZE", "100", "expected at most 64"),
        ("SHOAL_POOL_SIZ", "3", "not a setting (did you mean `SHOAL_POOL_SIZE`?)"),
        ("SHOAL_DATABASES", "{not json", 'expected JSON, e.g. {"app": '),
    ],
)
def test_messages_say_what_is_expected_in_plain_words(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as exc:
        load_settings()
    problem = only_problem(exc)
    assert problem.value == value
    assert problem.source == f"environment {variable}"
    assert expected in problem.expected
    assert "Input should" not in str(problem)


def test_a_list_from_the_environment_may_be_plain_words(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_SEARCH_PATH_TAIL", "public, ext")
    monkeypatch.setenv("SHOAL_DATABASES__APP__EXPORT_ENV", "DATABASE_URL")
    settings = load_settings()
    assert settings.search_path_tail == ("public", "ext")
    assert settings.databases["app"].export_env == ("DATABASE_URL",)
