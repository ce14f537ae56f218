"""Every command takes --home; the commands that only look never start the server there."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from shoal.cli import cli
from tests.cli.conftest import Project

LOOKING = [["ps"], ["locks"], ["pool", "status"], ["sweep", "--dry-run"]]


@pytest.mark.parametrize("command", LOOKING, ids=" ".join)
@pytest.mark.parametrize("where", ["before", "after"])
def test_looking_commands_take_home_and_start_nothing_in_it(
    project: Project, tmp_path: Path, command: list[str], where: str
) -> None:
    project({})  # no URL: the database lives on the embedded server of --home
    (tmp_path / "pyproject.toml").write_text("[tool.shoal.databases.app]\n")
    home = tmp_path / "unused-home"
    args = ["--home", str(home)]
    argv = [*args, *command] if where == "before" else [*command, *args]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code in (0, 1), result.output
    assert "Traceback" not in result.output
    assert "on the embedded server, which is not running" in result.output
    # Nothing started, nothing created: no data directory appeared in that home.
    assert not (home / "data").exists()
    assert not home.exists() or not any(home.rglob("PG_VERSION"))


def test_home_reaches_the_embedded_server_commands(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = CliRunner().invoke(cli, ["--home", str(home), "db", "status", "--json"])
    assert result.exit_code == 0, result.output
    assert str(home) in result.output


def test_output_that_is_not_a_terminal_is_not_wrapped(project: Project, tmp_path: Path) -> None:
    name = "a_database_whose_name_is_long_enough_to_wrap_at_eighty_columns"
    project({})
    (tmp_path / "pyproject.toml").write_text(f"[tool.shoal.databases.{name}]\n")
    result = CliRunner().invoke(cli, ["--home", str(tmp_path / "home"), "sweep", "--dry-run"])
    assert result.exit_code == 0, result.output
    table = [line for line in result.output.splitlines() if name in line]
    assert table, result.output  # the row holds the name whole, on one line
    assert any(len(line) > 80 for line in result.output.splitlines())
