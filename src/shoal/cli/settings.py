"""Settings for a CLI invocation: the nearest pyproject.toml, the environment, the flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shoal.config import Settings, find_project_file, load_settings


def cli_settings(**flags: Any) -> Settings:
    return load_settings(flags=flags, pyproject=find_project_file(None, Path.cwd()))
