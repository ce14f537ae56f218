"""The Django test databases remembered for the sweep: per project, private, deduplicated."""

from __future__ import annotations

import stat
from pathlib import Path

from shoal.integrations.django import known

URL = "postgresql://app:secret@db1:5432/test_app"


def test_remembered_once_per_project_and_private(tmp_path: Path) -> None:
    known.remember(tmp_path, "aaaaaaaaaaaa", {"default": URL})
    known.remember(tmp_path, "aaaaaaaaaaaa", {"default": URL})
    known.remember(tmp_path, "bbbbbbbbbbbb", {"default": URL.replace("db1", "db2")})
    assert known.read(tmp_path, "aaaaaaaaaaaa") == {"default": URL}
    assert known.named(tmp_path, "aaaaaaaaaaaa", set()) == {"django:default": URL}
    assert known.named(tmp_path, "aaaaaaaaaaaa", {"django:default"}) == {}
    mode = known.path(tmp_path, "aaaaaaaaaaaa").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600  # the URL may carry a password


def test_a_second_database_of_the_same_name_on_another_server(tmp_path: Path) -> None:
    other = URL.replace("db1", "db2")
    known.remember(tmp_path, "cccccccccccc", {"default": URL})
    known.remember(tmp_path, "cccccccccccc", {"default": other})
    assert sorted(known.read(tmp_path, "cccccccccccc").values()) == sorted([URL, other])
    known.forget(tmp_path, "cccccccccccc", {URL})
    assert list(known.read(tmp_path, "cccccccccccc").values()) == [other]


def test_nothing_remembered_reads_as_nothing(tmp_path: Path) -> None:
    assert known.read(tmp_path, "dddddddddddd") == {}
    known.path(tmp_path, "dddddddddddd").parent.mkdir(parents=True)
    known.path(tmp_path, "dddddddddddd").write_text("not json")
    assert known.read(tmp_path, "dddddddddddd") == {}
