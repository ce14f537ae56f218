from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server
from tests.django.project import DjangoProject, make


@pytest.fixture
def shop(tmp_path: Path, embedded: Server) -> Iterator[DjangoProject]:
    project = make(tmp_path, embedded)
    yield project
    project.drop_databases()
