"""`shoal run` end to end: fresh namespaces, validation first, reports, exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shoal import naming
from tests.cli.test_sweep import stale_schema
from tests.conftest import Databases, Server
from tests.plugin import inner

RECORDING_TEST = """
from recorder import record

def test_records(shoal_namespace, shoal_schema):
    record(namespace=shoal_namespace, schema=shoal_schema)
"""


def shoal(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    records = root / ".records"
    records.mkdir(exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "shoal", "run", *args],
        cwd=root,
        env=inner.clean_env(RECORD_DIR=str(records), **(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def project(tmp_path: Path, server: Server, database: str, test: str = RECORDING_TEST) -> Path:
    return inner.write_project(
        tmp_path,
        {"app": {"url": server.url(database)}},
        {"test_run.py": test},
        shoal={"reports_dir": "reports"},
    )


def reports(root: Path) -> list[Path]:
    return sorted((root / "reports").glob("*.json")) if (root / "reports").exists() else []


def report_namespace(report: Path) -> str:
    parsed = naming.parse_report_filename(report.name)
    assert parsed is not None, report
    return parsed[1]


def test_stale_namespace_in_the_shell_gets_a_fresh_one(
    tmp_path: Path, embedded: Server, embedded_databases: Databases
) -> None:
    root = project(tmp_path, embedded, embedded_databases.new("run"))
    proc = shoal(root, "--", "-n", "0", env={naming.ENV_NAMESPACE: "stale1"})
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stdout + stderr
    assert "shoal: sweep:" in stderr
    namespaces = {r["namespace"] for r in inner.read_records(root)}
    assert len(namespaces) == 1
    namespace = namespaces.pop()
    assert namespace != "stale1"
    assert naming.is_auto_namespace(namespace)
    assert "from the shoal run that started this pytest" in stdout
    [report] = reports(root)
    parsed = naming.parse_report_filename(report.name)
    assert parsed is not None
    assert parsed[1] == namespace


def test_invalid_forced_namespace_exits_2_before_anything_exists(
    tmp_path: Path, embedded: Server, embedded_databases: Databases
) -> None:
    database = embedded_databases.new("runbad")
    root = project(tmp_path, embedded, database)
    proc = shoal(root, env={naming.ENV_NAMESPACE_FORCE: "Not_Valid"})
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "namespace_force = 'Not_Valid' (from environment SHOAL_NAMESPACE_FORCE)" in stderr
    assert "Traceback" not in stderr
    assert reports(root) == []
    assert not (root / ".records" / "main.jsonl").exists()
    with embedded.connect(database) as conn:
        rows = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'test\\_%'")
        assert rows.fetchall() == []


def test_two_runs_started_together_write_two_reports_and_keep_exit_status(
    tmp_path: Path, embedded: Server, embedded_databases: Databases
) -> None:
    failing = RECORDING_TEST + "\ndef test_fails():\n    assert False\n"
    root = project(tmp_path, embedded, embedded_databases.new("runtwo"), failing)
    procs = [shoal(root, "--no-sweep", "--", "-n", "0") for _ in range(2)]
    outputs = [proc.communicate(timeout=180) for proc in procs]
    assert [proc.returncode for proc in procs] == [1, 1], outputs
    files = reports(root)
    assert len(files) == 2
    names = {r["namespace"] for r in inner.read_records(root)}
    assert {report_namespace(f) for f in files} == names
    assert all("shoal: sweep:" not in err for _, err in outputs)


def test_on_github_actions_the_run_appends_its_summary_and_stamps_its_exit(
    tmp_path: Path, embedded: Server, embedded_databases: Databases
) -> None:
    root = project(tmp_path / "project", embedded, embedded_databases.new("summary"))
    summary = tmp_path / "step_summary.md"
    summary.write_text("# earlier step\n")
    proc = shoal(root, "--no-sweep", "--", "-n", "0", env={"GITHUB_STEP_SUMMARY": str(summary)})
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stdout + stderr
    text = summary.read_text()
    assert text.startswith("# earlier step\n")
    [report] = reports(root)
    namespace = report_namespace(report)
    assert namespace in text
    assert "1 passed" in text
    written = json.loads(report.read_text())
    assert written["exited"] is not None
    assert written["provisioning"][0]["start"] is not None


def test_a_dead_runs_schema_is_swept_alongside_the_run(
    tmp_path: Path, server: Server, databases: Databases
) -> None:
    if server.kind == "embedded":
        # The sweep keeps everything while a server has been up for less than its grace
        # period, as the suite's own embedded server may have been.
        pytest.skip("needs a server up for longer than the sweep's grace period")
    database = databases.new("runsweep")
    stale = stale_schema(server, database)
    root = project(tmp_path, server, database)
    proc = shoal(root, "--", "-n", "0")
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stdout + stderr
    # Printed once the run is over: after pytest's own summary.
    assert stderr.rstrip().splitlines()[-1].startswith("shoal: sweep: dropped 1 stale schema")
    with server.connect(database) as conn:
        row = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (stale,)).fetchone()
    assert row is None
    (record,) = inner.read_records(root)
    assert record["schema"] != stale


LOOKOUT = """
import json, os, sys, threading

def pytest_collection_finish(session):
    seen = {
        "threads": [t.name for t in threading.enumerate()],
        "settings_loaded": "shoal.config" in sys.modules,
        "report_models_loaded": "shoal.report" in sys.modules,
    }
    with open(os.environ["LOOKOUT"], "w") as out:
        json.dump(seen, out)
"""


def test_a_project_that_gives_nothing_starts_without_models_and_sweeps_after(
    tmp_path: Path,
) -> None:
    if "SHOAL_HOME" in inner.clean_env():
        pytest.skip("SHOAL_HOME is a setting: the run would not be given nothing")
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    (tmp_path / "conftest.py").write_text(LOOKOUT)
    (tmp_path / "test_plain.py").write_text("def test_one():\n    pass\n")
    lookout = tmp_path / "lookout.json"
    env = inner.clean_env(LOOKOUT=str(lookout))
    env.pop("SHOAL_POOL_SIZE")  # a setting; nothing configured means no pool anyway
    proc = subprocess.run(
        [sys.executable, "-m", "shoal", "run", "--", "-n", "0", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = json.loads(lookout.read_text())
    # In-process: pytest's collection is over, and neither the settings' models, nor the
    # report's, nor the sweep have started yet; the sweep ran once the test had reported.
    assert seen == {
        "threads": ["MainThread"],
        "settings_loaded": False,
        "report_models_loaded": False,
    }
    assert proc.stderr.rstrip().splitlines()[-1].startswith("shoal: sweep: "), proc.stderr
