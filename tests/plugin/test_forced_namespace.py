"""Two runs forced into one namespace would trample each other: the second is refused."""

from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import Databases, Server, token
from tests.plugin import inner

WAITING_TEST = """
import os, pathlib, time

def test_waits(shoal_schema):
    here = pathlib.Path(os.environ["RECORD_DIR"])
    (here / "started").write_text(shoal_schema)
    deadline = time.time() + 120
    while not (here / "go").exists() and time.time() < deadline:
        time.sleep(0.05)
"""


def test_a_forced_namespace_in_use_is_refused_before_anything_is_created(
    tmp_path: Path, embedded: Server, embedded_databases: Databases
) -> None:
    database = embedded_databases.new("forced")
    config = {"app": {"url": embedded.url(database)}}
    first_root = inner.write_project(tmp_path / "first", config, {"test_wait.py": WAITING_TEST})
    second_root = inner.write_project(tmp_path / "second", config, {"test_wait.py": WAITING_TEST})
    env = {"SHOAL_NAMESPACE_FORCE": f"same{token()}"}
    first = inner.start(first_root, "-n", "0", env=env)
    try:
        deadline = time.monotonic() + 60
        while not (first_root / ".records" / "started").exists():
            assert first.poll() is None, inner.finish(first_root, first).output
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = inner.run(second_root, "-n", "0", env=env)
        assert second.returncode == 4, second.output
        assert f"namespace_force = {env['SHOAL_NAMESPACE_FORCE']!r}" in second.output
        assert "(from environment SHOAL_NAMESPACE_FORCE)" in second.output
        assert "is in use by the run whose connection pytest_lease_" in second.output
        assert not (second_root / ".records" / "started").exists()
    finally:
        (first_root / ".records" / "go").touch()
    done = inner.finish(first_root, first)
    assert done.returncode == 0, done.output
    # Once the first has finished, the namespace is free again.
    (second_root / ".records" / "go").touch()
    again = inner.run(second_root, "-n", "0", env=env)
    assert again.returncode == 0, again.output
