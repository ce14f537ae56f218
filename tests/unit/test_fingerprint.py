"""Setup fingerprints: stable for an unchanged setup, different for any change in it."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, cast

import pytest
from sqlalchemy import Column, Index, Integer, MetaData, String, Table

from shoal import setups
from shoal.setups import Setup, fingerprint


def make_setup(kind: str, spec: str, target: object) -> Setup:
    return Setup(setups.kind_named(kind), spec, target)


def models(extra_column: bool = False, index: bool = True) -> MetaData:
    metadata = MetaData()
    Table(
        "users",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("email", String(200), nullable=False),
        *([Column("nickname", String(50))] if extra_column else []),
        *([Index("ix_users_email", "email")] if index else []),
    )
    Table("orders", metadata, Column("id", Integer, primary_key=True))
    return metadata


def metadata_fp(metadata: MetaData, **kwargs: Any) -> str | None:
    return fingerprint(make_setup("metadata", "m:metadata", metadata), **kwargs)


def test_metadata_fingerprint_is_stable_and_follows_the_model() -> None:
    first = metadata_fp(models())
    assert first is not None
    assert len(first) == 64
    assert metadata_fp(models()) == first  # a fresh, identical MetaData
    assert metadata_fp(models(extra_column=True)) != first
    assert metadata_fp(models(index=False)) != first


def test_metadata_fingerprint_ignores_declaration_order() -> None:
    a, b = MetaData(), MetaData()
    Table("x", a, Column("id", Integer, primary_key=True))
    Table("y", a, Column("id", Integer, primary_key=True))
    Table("y", b, Column("id", Integer, primary_key=True))
    Table("x", b, Column("id", Integer, primary_key=True))
    assert metadata_fp(a) == metadata_fp(b)


def test_tail_and_extensions_are_part_of_it() -> None:
    base = metadata_fp(models())
    assert metadata_fp(models(), tail=("public",)) != base
    assert metadata_fp(models(), extensions=("pg_trgm",)) != base


def test_sql_fingerprint_is_the_file(tmp_path: Path) -> None:
    path = tmp_path / "schema.sql"
    path.write_text("CREATE TABLE t (id int);\n")
    hook = make_setup("sql", "sql:schema.sql", path)
    first = fingerprint(hook)
    assert fingerprint(hook) == first
    path.write_text("CREATE TABLE t (id bigint);\n")
    assert fingerprint(hook) != first


ALEMBIC_INI = "[alembic]\nscript_location = migrations\n"
MIGRATION = """revision = "0001"
down_revision = None


def upgrade():
    from alembic import op
    op.execute("CREATE TABLE t (id int)")
"""


def alembic_project(root: Path) -> Path:
    (root / "migrations" / "versions").mkdir(parents=True)
    (root / "alembic.ini").write_text(ALEMBIC_INI)
    (root / "migrations" / "env.py").write_text("# env\n")
    (root / "migrations" / "versions" / "0001_init.py").write_text(MIGRATION)
    return root / "alembic.ini"


def test_alembic_fingerprint_follows_the_scripts_not_the_checkout(tmp_path: Path) -> None:
    ini = alembic_project(tmp_path / "a")
    first = fingerprint(make_setup("alembic", "alembic:alembic.ini", ini))
    assert first is not None
    # The same project elsewhere (another checkout) hashes the same; caches do not count.
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    (tmp_path / "b" / "migrations" / "__pycache__").mkdir()
    (tmp_path / "b" / "migrations" / "__pycache__" / "env.cpython-311.pyc").write_bytes(b"x")
    other = tmp_path / "b" / "alembic.ini"
    assert fingerprint(make_setup("alembic", "alembic:alembic.ini", other)) == first
    (tmp_path / "b" / "migrations" / "versions" / "0002_more.py").write_text("# new\n")
    assert fingerprint(make_setup("alembic", "alembic:alembic.ini", other)) != first


def _setup(conn: object) -> None:
    """A callable setup without a fingerprint."""


class _Fingerprinted(Protocol):
    """A setup function with the attribute users set to supply its fingerprint."""

    shoal_fingerprint: object

    def __call__(self, conn: object) -> None: ...


def _with(value: object) -> Callable[[object], None]:
    def setup(conn: object) -> None:
        """A callable setup carrying a user-supplied fingerprint."""

    cast(_Fingerprinted, setup).shoal_fingerprint = value
    return setup


@pytest.mark.parametrize(
    ("target", "has"),
    [(_setup, False), (_with("v1"), True), (_with(""), False), (_with(lambda: "v1"), True)],
)
def test_callable_needs_a_supplied_fingerprint(target: Any, has: bool) -> None:
    assert (fingerprint(make_setup("callable", "m:f", target)) is not None) is has


def test_callable_fingerprint_follows_the_supplied_value() -> None:
    one = fingerprint(make_setup("callable", "m:f", _with("v1")))
    assert one == fingerprint(make_setup("callable", "m:f", _with(lambda: "v1")))
    assert one != fingerprint(make_setup("callable", "m:f", _with("v2")))


def test_no_setup_no_fingerprint() -> None:
    assert fingerprint(None) is None
