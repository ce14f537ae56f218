"""shoal demo counts each test once, whatever pytest -v prints for it."""

from __future__ import annotations

import subprocess
import sys

from shoal.cli.demo import DemoRun
from shoal.words import plural


def test_a_test_whose_teardown_errors_after_it_passed_counts_once_as_failed() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"], text=True)
    proc.wait()
    run = DemoRun(index=1, proc=proc, started=0.0)
    for line in [
        "tests/test_a.py::test_one PASSED                [ 33%]",
        "tests/test_a.py::test_one ERROR                 [ 33%]",
        "tests/test_a.py::test_two PASSED                [ 66%]",
        "tests/test_a.py::test_three FAILED              [100%]",
        "FAILED tests/test_a.py::test_three - assert 0",
        "ERROR tests/test_a.py::test_one - RuntimeError",
        "E       assert 0",
    ]:
        run.note(line)
    assert run.progress == {"passed": 1, "failed": 2}


def test_xdist_lines_count_too() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"], text=True)
    proc.wait()
    run = DemoRun(index=1, proc=proc, started=0.0)
    for line in [
        "[gw1] [ 25%] PASSED tests/test_ledger.py::test_memo[2] ",
        "[gw0] [100%] FAILED tests/test_ledger.py::test_memo[0] ",
        "[gw0] [100%] ERROR tests/test_ledger.py::test_memo[0] ",
    ]:
        run.note(line)
    assert run.progress == {"passed": 1, "failed": 1}


def test_plural() -> None:
    assert [plural(n, "schema") for n in (0, 1, 2)] == ["0 schemas", "1 schema", "2 schemas"]
