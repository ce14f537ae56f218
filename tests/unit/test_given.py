"""shoal.given: a run given no setting plans from the defaults without the settings' models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shoal.config import load_settings
from shoal.given import NOT_SETTINGS, is_own_variable, nothing_given
from shoal.plan import RunPlan
from shoal.targets import plan_from

NONE: dict[str, Any] = {"keep_on_failure": None, "ddl_slots": None}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("SHOAL_"):
            monkeypatch.delenv(name)


def project(tmp_path: Path, body: str = "[tool.pytest.ini_options]\n") -> Path:
    path = tmp_path / "pyproject.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_the_unconfigured_plan_is_the_plan_of_the_default_settings(tmp_path: Path) -> None:
    pyproject = project(tmp_path)
    assert nothing_given(flags=NONE, ini={}, pyproject=pyproject, environ={})
    settings = load_settings(flags=NONE, pyproject=pyproject, project_root=tmp_path)
    from shoal.namespace import fresh

    namespace = fresh()
    full = plan_from(settings, namespace, "owner", [], settings.search_path_tail, configured=False)
    fast = RunPlan.unconfigured(namespace.token, namespace.origin, "owner", tmp_path)
    # Every field, the ones equality skips included.
    assert fast.to_json() == full.to_json()


@pytest.mark.parametrize(
    ("flags", "ini", "body", "environ"),
    [
        ({"ddl_slots": "4"}, {}, None, {}),
        ({"keep_on_failure": False}, {}, None, {}),
        ({}, {"pool_size": "0"}, None, {}),
        ({}, {}, "[tool.shoal]\npool_size = 0\n", {}),
        ({}, {}, "[tool.shoal]\n[tool.shoal.databases.app]\n", {}),
        ({}, {}, "[tool.shoal\n", {}),  # unreadable: loading the settings says why
        ({}, {}, None, {"SHOAL_POOL_SIZE": "0"}),
        ({}, {}, None, {"SHOAL_NAMESPACE_FORCE": "mine"}),
        ({}, {}, None, {"SHOAL_HOME": "/somewhere"}),
        ({}, {}, None, {"SHOAL_POOLSIZE": "0"}),  # a typo: loading the settings says so
    ],
)
def test_anything_given_loads_the_settings(
    tmp_path: Path,
    flags: dict[str, Any],
    ini: dict[str, Any],
    body: str | None,
    environ: dict[str, str],
) -> None:
    pyproject = None if body is None else project(tmp_path, body)
    assert not nothing_given(flags=flags, ini=ini, pyproject=pyproject, environ=environ)


def test_shoals_own_variables_are_not_settings() -> None:
    own = ["SHOAL_NAMESPACE", "SHOAL_RUNNER", "SHOAL_PLAN", "SHOAL_SERVE_QUEUE", "SHOAL_TEST_X"]
    assert all(is_own_variable(name) for name in own)
    assert not is_own_variable("SHOAL_NAMESPACE_FORCE")
    assert "SHOAL_NAMESPACE" in NOT_SETTINGS
    environ = dict.fromkeys(own, "x") | {"PATH": "/bin"}
    assert nothing_given(flags={}, ini={}, pyproject=None, environ=environ)


def test_a_run_given_nothing_does_not_import_the_settings_models(tmp_path: Path) -> None:
    (tmp_path / "test_a.py").write_text(
        "import sys\n\ndef test_a():\n    assert 'shoal.config' not in sys.modules\n"
        "    assert 'pydantic' not in sys.modules\n"
    )
    project(tmp_path)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
