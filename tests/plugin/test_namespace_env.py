"""A namespace exported in the environment is kept only for the runner's own children."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil

from shoal import naming
from tests.plugin import inner

NAMESPACE_TEST = """
from recorder import record

def test_namespace(shoal_namespace):
    record(namespace=shoal_namespace)
"""

# Stands in for `shoal run`: exports its namespace and its own identity, then runs pytest.
RUNNER = """
import os, subprocess, sys, psutil
me = psutil.Process()
env = dict(os.environ, SHOAL_NAMESPACE=sys.argv[1], SHOAL_RUNNER=f"{me.pid}:{me.create_time():.2f}")
sys.exit(subprocess.call([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2"], env=env))
"""


def project(tmp_path: Path) -> Path:
    files = {"test_ns.py": NAMESPACE_TEST, "runner.py": RUNNER}
    for i in range(3):
        files[f"test_more_{i}.py"] = NAMESPACE_TEST
    # No databases configured: nothing is provisioned, only the namespace is resolved.
    root = inner.write_project(tmp_path, {}, files)
    text = (root / "pyproject.toml").read_text().replace("[tool.shoal]\n", "")
    (root / "pyproject.toml").write_text(text)
    return root


def test_stale_export_from_a_non_ancestor_is_ignored(tmp_path: Path) -> None:
    root = project(tmp_path)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = psutil.Process(bystander.pid).create_time()
        env = {
            naming.ENV_NAMESPACE: "stale1",
            naming.ENV_RUNNER: naming.runner_token(bystander.pid, started),
        }
        result = inner.run(root, "-n", "2", env=env)
    finally:
        bystander.kill()
        bystander.wait()
    assert result.returncode == 0, result.output
    namespaces = {r["namespace"] for r in result.records}
    assert len(namespaces) == 1
    assert "stale1" not in namespaces
    assert naming.is_auto_namespace(namespaces.pop())


def test_export_from_the_ancestor_runner_is_kept(tmp_path: Path) -> None:
    root = project(tmp_path)
    records = root / ".records"
    records.mkdir()
    env = inner.clean_env(RECORD_DIR=str(records))
    code = subprocess.call([sys.executable, "runner.py", "fromrunner"], cwd=root, env=env)
    assert code == 0
    assert {r["namespace"] for r in inner.read_records(root)} == {"fromrunner"}


def test_runner_token_of_a_reused_pid_is_not_an_ancestor(tmp_path: Path) -> None:
    root = project(tmp_path)
    me = psutil.Process()
    # Our pid is an ancestor of the inner pytest, but with another start time it is a
    # different process that happened to get the same pid.
    env = {
        naming.ENV_NAMESPACE: "reused",
        naming.ENV_RUNNER: naming.runner_token(me.pid, me.create_time() - 3600),
    }
    result = inner.run(root, env=env)
    assert result.returncode == 0, result.output
    assert "reused" not in {r["namespace"] for r in result.records}
