"""pytest runs that only look start nothing: no server, no schema, no refill."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.plugin import inner

TESTS = "def test_one(shoal_databases):\n    pass\n"


@pytest.mark.parametrize("flag", ["--help", "--co", "--fixtures", "--version", "--markers"])
def test_a_run_that_only_looks_starts_and_creates_nothing(tmp_path: Path, flag: str) -> None:
    # A configured project on the embedded server of a home of its own: had anything
    # started it, its data directory would be there.
    project = inner.write_project(
        tmp_path / "project",
        {"app": {"setup": "sql:schema.sql"}},
        {"schema.sql": "CREATE TABLE t (id int);\n", "test_one.py": TESTS},
    )
    home = tmp_path / "home"
    result = inner.run(project, flag, env={"SHOAL_HOME": str(home), "SHOAL_POOL_SIZE": "2"})
    assert result.returncode == 0, result.output
    assert not home.exists(), sorted(str(p) for p in home.rglob("*"))
    if flag == "--co":
        assert "test_one" in result.stdout
