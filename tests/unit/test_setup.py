"""shoal.setups.load: a setup spec is resolved up front, or fails with a clear error."""

from __future__ import annotations

import itertools
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy

from shoal import setups
from shoal.conninfo import sqlalchemy_url
from shoal.errors import UsageError
from shoal.setups import Setup

KEY = "databases.app.setup"
SOURCE = "pyproject.toml [tool.shoal]"
KINDS = ("alembic:", "sql:", "<module>:<attribute>")
_module_numbers = itertools.count()

MakeModule = Callable[[str], str]


@pytest.fixture
def make_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeModule]:
    """Write an importable module with a name unique to this test; forget it afterwards."""
    directory = tmp_path / "modules"
    directory.mkdir()
    monkeypatch.syspath_prepend(str(directory))
    written: list[str] = []

    def make(source: str) -> str:
        name = f"shoal_unit_setup_{next(_module_numbers)}"
        (directory / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        written.append(name)
        return name

    yield make
    for name in written:
        sys.modules.pop(name, None)


def parse(spec: str, root: Path) -> Setup:
    return setups.load(spec, key=KEY, source=SOURCE, root=root)


def raises_usage_error(spec: str, root: Path) -> UsageError:
    with pytest.raises(UsageError) as exc:
        parse(spec, root)
    error = exc.value
    assert (error.key, error.value, error.source) == (KEY, spec, SOURCE)
    message = str(error)
    assert KEY in message
    assert repr(spec) in message
    assert SOURCE in message
    return error


def mentions_every_kind(message: str) -> bool:
    return all(kind in message for kind in KINDS)


# -- files --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sql", "alembic"])
def test_file_kinds_resolve_relative_to_the_root(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "db" / "schema.file"
    target.parent.mkdir()
    target.write_text("", encoding="utf-8")

    hook = setups.load(f"{kind}:db/schema.file", key=KEY, source=SOURCE, root=tmp_path)

    assert (hook.kind.name, hook.spec, hook.target) == (kind, f"{kind}:db/schema.file", target)


def test_file_kinds_accept_an_absolute_path(tmp_path: Path) -> None:
    target = tmp_path / "schema.sql"
    target.write_text("CREATE TABLE t (id int);", encoding="utf-8")

    hook = setups.load(f"sql:{target}", key=KEY, source=SOURCE, root=tmp_path / "elsewhere")

    assert hook.target == target


@pytest.mark.parametrize("spec", ["sql:missing.sql", "alembic:missing/alembic.ini", "sql:db"])
def test_missing_file(tmp_path: Path, spec: str) -> None:
    (tmp_path / "db").mkdir()  # a directory is not a file either

    error = raises_usage_error(spec, tmp_path)

    assert str(tmp_path / spec.partition(":")[2]) in error.expected
    assert "does not exist" in error.expected
    assert mentions_every_kind(error.expected)


# -- unknown kinds ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec", ["not a spec", "", "sql:", "schema.sql", "yaml:", "mod:attr:x", "my-pkg:meta"]
)
def test_unknown_kind(tmp_path: Path, spec: str) -> None:
    error = raises_usage_error(spec, tmp_path)

    assert "unknown setup kind" in error.expected
    assert mentions_every_kind(error.expected)


def test_unknown_kind_whose_prefix_is_not_importable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)  # as if PyYAML were not installed

    error = raises_usage_error("yaml:foo.yaml", tmp_path)

    assert mentions_every_kind(error.expected)


def test_unknown_kind_whose_prefix_is_an_importable_module(tmp_path: Path) -> None:
    error = raises_usage_error("json:schema.json", tmp_path)

    assert "has no attribute 'schema.json'" in error.expected
    assert mentions_every_kind(error.expected)


# -- modules ------------------------------------------------------------------------------


def test_module_that_does_not_exist(tmp_path: Path) -> None:
    error = raises_usage_error("shoal_unit_no_such_module.models:metadata", tmp_path)

    assert "cannot be imported" in error.expected
    assert "shoal_unit_no_such_module" in error.expected
    assert mentions_every_kind(error.expected)


def test_module_whose_own_import_fails(tmp_path: Path, make_module: MakeModule) -> None:
    name = make_module("import shoal_unit_missing_dependency\n")

    error = raises_usage_error(f"{name}:metadata", tmp_path)

    assert "imported" in error.expected
    assert "shoal_unit_missing_dependency" in error.expected  # the real cause
    assert mentions_every_kind(error.expected)


def test_module_whose_own_import_fails_is_not_called_unknown(
    tmp_path: Path, make_module: MakeModule
) -> None:
    name = make_module("import shoal_unit_missing_dependency\n")

    error = raises_usage_error(f"{name}:metadata", tmp_path)

    assert "unknown setup kind" not in error.expected


def test_module_with_a_syntax_error(tmp_path: Path, make_module: MakeModule) -> None:
    name = make_module("def broken(:\n")

    error = raises_usage_error(f"{name}:metadata", tmp_path)

    assert "imported" in error.expected
    assert "SyntaxError" in error.expected or "syntax" in error.expected


@pytest.mark.parametrize("attribute", ["metdata", "models.metadata", "metadata.missing"])
def test_attribute_missing(tmp_path: Path, make_module: MakeModule, attribute: str) -> None:
    name = make_module("import sqlalchemy\nmetadata = sqlalchemy.MetaData()\n")

    error = raises_usage_error(f"{name}:{attribute}", tmp_path)

    assert f"has no attribute {attribute!r}" in error.expected
    assert name in error.expected


@pytest.mark.parametrize(
    ("attribute", "type_name"), [("NUMBER", "int"), ("NAME", "str"), ("TABLES", "list")]
)
def test_attribute_that_is_neither_metadata_nor_callable(
    tmp_path: Path, make_module: MakeModule, attribute: str, type_name: str
) -> None:
    name = make_module("NUMBER = 3\nNAME = 'x'\nTABLES = []\n")

    error = raises_usage_error(f"{name}:{attribute}", tmp_path)

    assert f"{attribute!r} is a {type_name}" in error.expected
    assert mentions_every_kind(error.expected)


def test_metadata(tmp_path: Path, make_module: MakeModule) -> None:
    name = make_module(
        """
        import sqlalchemy

        class Base:
            metadata = sqlalchemy.MetaData()

        metadata = Base.metadata
        """
    )

    for attribute in ("metadata", "Base.metadata"):
        hook = parse(f"{name}:{attribute}", tmp_path)
        assert hook.kind.name == "metadata"
        assert isinstance(hook.target, sqlalchemy.MetaData)
        assert hook.target is sys.modules[name].metadata


def test_callable(tmp_path: Path, make_module: MakeModule) -> None:
    name = make_module(
        """
        def create(conn):
            conn.execute("CREATE TABLE t (id int)")

        class Seeder:
            def __call__(self, conn):
                pass

        seeder = Seeder()
        """
    )

    hook = parse(f"{name}:create", tmp_path)
    assert hook.kind.name == "callable"
    assert hook.target is sys.modules[name].create
    assert parse(f"{name}:seeder", tmp_path).kind.name == "callable"


# -- sqlalchemy_url -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://app:s3cret@db/app", "postgresql+psycopg://app:s3cret@db/app"),
        ("postgres://db/app", "postgresql+psycopg://db/app"),
        ("postgresql:///app?host=/tmp", "postgresql+psycopg:///app?host=/tmp"),
        ("postgresql+psycopg://db/app", "postgresql+psycopg://db/app"),
        ("postgresql+asyncpg://db/app", "postgresql+asyncpg://db/app"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_sqlalchemy_url(url: str, expected: str) -> None:
    assert sqlalchemy_url(url) == expected
