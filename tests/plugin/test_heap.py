"""The heap frozen after collection: the tests' own garbage is still collected and its
unraisable exceptions still reported, with and without xdist."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Databases, Server
from tests.plugin import inner

TESTS = """
import gc

class Noisy:
    def __del__(self):
        raise ValueError("raised by a cycle a test left behind")

def test_the_heap_is_frozen_before_the_first_test(shoal_databases):
    assert gc.get_freeze_count() > 0

def test_leaves_a_cycle(shoal_databases):
    gc.disable()  # so that only pytest's own collection at the end can find the cycle
    noisy = Noisy()
    noisy.me = noisy
"""


@pytest.mark.parametrize("workers", ["0", "2"])
def test_garbage_a_test_leaves_is_still_collected_and_reported(
    tmp_path: Path, server: Server, databases: Databases, workers: str
) -> None:
    database = databases.new("heap")
    project = inner.write_project(
        tmp_path, {"app": {"url": server.url(database)}}, {"test_heap.py": TESTS}
    )
    result = inner.run(project, "-n", workers, "-p", "no:randomly")
    assert result.returncode == 0, result.output
    assert "2 passed" in result.stdout
    # pytest's collection at unconfigure found the cycle and ran its finaliser: what shoal
    # freezes (before the first test) holds nothing a test made.
    assert "raised by a cycle a test left behind" in result.output, result.output
