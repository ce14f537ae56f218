"""The README's first command: the example multi-tenant suite, in parallel, on the embedded server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.plugin.inner import clean_env

ROOT = Path(__file__).parents[2]


def test_example_suite_passes_in_parallel() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:hypothesispytest",
            "-n",
            "2",
            "examples/multitenant",
        ],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "shoal: namespace p" in result.stdout
    assert " passed" in result.stdout
    assert "failed" not in result.stdout
