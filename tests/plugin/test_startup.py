"""What an xdist worker imports before its first test: every import delays every run.

A worker of a project that configures no database provisions nothing until a shoal
fixture asks, so it must not have loaded the settings (pydantic), the PostgreSQL layer
(psycopg) or the report models by the time its tests run.
"""

from __future__ import annotations

from pathlib import Path

from tests.plugin import inner

# Records without the recorder module: it imports psycopg itself.
WHAT_WAS_IMPORTED = """
import json
import os
import sys

HEAVY = ("shoal.config", "shoal.pg", "shoal.report", "shoal.plugin.report")


def test_what_this_worker_imported():
    loaded = sorted(m for m in sys.modules if m.startswith(HEAVY))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(os.path.join(os.environ["RECORD_DIR"], f"{worker}.jsonl"), "a") as out:
        out.write(json.dumps({"worker": worker, "loaded": loaded}) + "\\n")


def test_second(shoal_namespace):
    assert shoal_namespace
"""


def test_a_worker_without_databases_imports_no_settings_and_no_postgres_layer(
    tmp_path: Path,
) -> None:
    project = inner.write_project(tmp_path / "project", {}, {"test_imports.py": WHAT_WAS_IMPORTED})
    result = inner.run(project, "-n", "2", "--shoal-order=none")
    assert result.returncode == 0, result.output
    (record,) = result.records
    assert record["worker"].startswith("gw")
    assert record["loaded"] == []
