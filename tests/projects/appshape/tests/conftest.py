"""Imports the application at import time: its engine is built from DATABASE_URL now."""

import json
import os
import pathlib
from collections.abc import Iterator

import pytest
from app.db import engine
from sqlalchemy.engine import Connection


@pytest.fixture
def conn() -> Iterator[Connection]:
    with engine.connect() as connection:
        transaction = connection.begin()
        yield connection
        transaction.rollback()


def record(**data: object) -> None:
    """What a test saw, for the suite that runs this project."""
    out = pathlib.Path(os.environ["RECORD_DIR"])
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(out / f"{worker}.jsonl", "a") as handle:
        handle.write(json.dumps(data) + "\n")
