"""How `shoal run` decides on xdist defaults."""

from __future__ import annotations

import pytest

from shoal.cli.run import pytest_argv, user_chose_xdist


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
