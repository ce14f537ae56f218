"""How `shoal run` decides on xdist defaults."""

from __future__ import annotations

import pytest

from shoal.cli import run
from shoal.cli.run import pytest_argv, user_chose_xdist
from shoal.errors import UsageError


@pytest.mark.parametrize(
    "args",
    [
        ["-n", "4"],
        ["-n4"],
        ["-nauto"],
        ["--numprocesses", "2"],
        ["--numprocesses=2"],
        ["--dist", "load"],
        ["--dist=loadfile"],
        ["-p", "no:xdist"],
        ["-pno:xdist"],
        ["-k", "fast", "-n", "0"],
    ],
)
def test_user_choices_are_respected(args: list[str]) -> None:
    assert user_chose_xdist(args)
    argv = pytest_argv(args)
    assert "worksteal" not in argv
    assert argv[-len(args) :] == args


@pytest.mark.parametrize("args", [[], ["-k", "fast"], ["tests/unit", "-x"], ["-p", "no:randomly"]])
def test_defaults_to_all_cores_with_worksteal(args: list[str]) -> None:
    assert not user_chose_xdist(args)
    argv = pytest_argv(args)
    assert argv[:4] == ["-n", "auto", "--dist", "worksteal"]
    assert "--shoal-report" in argv
    assert argv[len(argv) - len(args) :] == args


@pytest.mark.parametrize(
    ("raised", "said"),
    [
        (
            UsageError("databases.app.url", "env:NOPE", "pyproject.toml", "not set"),
            "databases.app.url",
        ),
        (RuntimeError("an unexpected failure"), "RuntimeError: an unexpected failure"),
    ],
)
def test_a_sweep_that_fails_says_so_in_one_line_and_the_run_goes_on(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    raised: Exception,
    said: str,
) -> None:
    def failing() -> None:
        raise raised

    monkeypatch.setattr(run, "cli_settings", failing)
    sweeping = run._Sweep(None)
    sweeping.report()  # starts the sweep if no test reported, then waits for it
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("shoal: sweep: not done: ")
    assert said in line
