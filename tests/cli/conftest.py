"""Fixtures for driving commands against a throwaway project directory."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from shoal.config import Settings
from shoal.embedded import EmbeddedServer

Project = Callable[..., Path]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """Write ``[tool.shoal]`` naming the given databases and make it the working directory.

    SHOAL_* settings in the environment would outrank the file, so they are cleared.
    """
    for name in list(os.environ):
        if name.startswith("SHOAL_") and name[6:].lower().split("__")[0] in Settings.model_fields:
            monkeypatch.delenv(name)

    def configure(databases: Mapping[str, str], connect_timeout: int = 5) -> Path:
        lines = ["[tool.shoal]", f"connect_timeout = {connect_timeout}"]
        for key, url in databases.items():
            # A JSON string is a valid TOML basic string.
            lines += [f"[tool.shoal.databases.{key}]", f"url = {json.dumps(url)}"]
        (tmp_path / "pyproject.toml").write_text("\n".join(lines) + "\n")
        monkeypatch.chdir(tmp_path)
        return tmp_path

    return configure


@pytest.fixture(scope="session")
def quiet_server() -> Iterator[str]:
    """The URL of a private server no other run uses: the only place "nothing" is certain.

    The shared servers are busy with other runs (other copies of this suite included),
    so only here can a test expect no blocked sessions and no namespaces at all.
    """
    # Not under pytest's tmp_path: as root the server's own user must reach the home.
    home = Path(tempfile.mkdtemp(prefix="shoal-test-quiet-"))
    server = EmbeddedServer(home)
    try:
        yield server.ensure_running()
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
