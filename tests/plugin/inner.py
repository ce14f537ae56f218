"""Helpers to write and run inner pytest projects that use shoal, as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

RECORDER = """
import json, os, pathlib
import psycopg

def record(**data):
    out = pathlib.Path(os.environ["RECORD_DIR"])
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(out / f"{worker}.jsonl", "a") as fh:
        fh.write(json.dumps(data) + "\\n")
"""


@dataclass
class InnerRun:
    returncode: int
    stdout: str
    stderr: str
    records: list[dict[str, Any]]

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for an inner run: ours minus anything shoal would export or read."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SHOAL_", "PYTEST_", "PG"))
        or k in ("SHOAL_HOME", "SHOAL_TEST_EXTERNAL_URL")
    }
    # No background pool refill after inner runs unless a test asks for one: it would
    # outlive the test and build schemas in databases the session is about to drop.
    env["SHOAL_POOL_SIZE"] = "0"
    env.update(extra)
    return env


def toml_value(value: object) -> str:
    return json.dumps(value)


def write_project(
    root: Path,
    databases: Mapping[str, Mapping[str, object]],
    files: Mapping[str, str],
    shoal: Mapping[str, object] | None = None,
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = ["[tool.pytest.ini_options]", 'pythonpath = ["."]', "", "[tool.shoal]"]
    for key, value in (shoal or {}).items():
        lines.append(f"{key} = {toml_value(value)}")
    for name, options in databases.items():
        lines.append(f"[tool.shoal.databases.{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in options.items()]
    (root / "pyproject.toml").write_text("\n".join(lines) + "\n")
    (root / "recorder.py").write_text(RECORDER)
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(content))
    return root


def start(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    records = root / ".records"
    records.mkdir(exist_ok=True)
    full_env = clean_env(RECORD_DIR=str(records), **(env or {}))
    return subprocess.Popen(
        # hypothesis' plugin is installed for our own tests; inner runs don't need its import.
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:hypothesispytest",
            *args,
        ],
        cwd=root,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so a test can kill the whole run
    )


def finish(root: Path, proc: subprocess.Popen[str], timeout: float = 180) -> InnerRun:
    stdout, stderr = proc.communicate(timeout=timeout)
    return InnerRun(proc.returncode, stdout, stderr, read_records(root))


def run(root: Path, *args: str, env: dict[str, str] | None = None) -> InnerRun:
    return finish(root, start(root, *args, env=env))


def read_records(root: Path) -> list[dict[str, Any]]:
    records = []
    for path in sorted((root / ".records").glob("*.jsonl")):
        records += [json.loads(line) for line in path.read_text().splitlines() if line]
    return records


# The run's controller stays a moment at exit, after shoal has started its reaper: the
# reaper waits for the run's process to exit, so the renamed schemas can be seen (and the
# reaper killed before it drops them).
LINGERING_CONFTEST = """
import atexit, os, pathlib, time

def pytest_configure(config):
    if not hasattr(config, "workerinput"):
        def linger():
            pathlib.Path(os.environ["LINGER_MARK"]).touch()
            time.sleep(float(os.environ["LINGER_S"]))
        atexit.register(linger)
"""


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    """Wait until the run ``proc`` has written ``path``; fail if it ends first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            stdout, stderr = proc.communicate()
            raise AssertionError(f"the run ended before it lingered:\n{stdout}\n{stderr}")
        assert time.monotonic() < deadline, "the run never reached its exit"
        time.sleep(0.05)


def reapers_of(proc: subprocess.Popen[str]) -> list[psutil.Process]:
    """The reapers the run ``proc`` has started and that are still running."""
    found = []
    for child in psutil.Process(proc.pid).children(recursive=True):
        try:
            if "shoal.cli.reap" in child.cmdline():
                found.append(child)
        except psutil.Error:
            continue
    return found
