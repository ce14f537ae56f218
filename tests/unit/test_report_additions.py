"""Report fields the timeline reads (kept, problems, exited, provisioning start): optional,
masked, and absent from older reports without harm."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from shoal.report import RunReport, read_report, record_exit, write_report
from tests.cli.test_report import sample


def test_an_older_report_without_the_fields_reads(tmp_path: Path) -> None:
    path = write_report(sample("olderfile"), tmp_path)
    data = json.loads(path.read_text())
    for key in ("kept", "problems", "exited"):
        data.pop(key)
    for timing in data["provisioning"]:
        timing.pop("start")
    path.write_text(json.dumps(data))
    report = read_report(path)
    assert report.kept == ()
    assert report.problems == ()
    assert report.exited is None
    assert all(p.start is None for p in report.provisioning)


def test_kept_and_problems_are_masked() -> None:
    report = RunReport.model_validate(
        {
            **sample("masked").model_dump(),
            "kept": ["app: psql 'postgresql://app:s3cret@db/app'"],
            "problems": ["drop failed on postgresql://app:s3cret@db/app"],
        }
    )
    assert "s3cret" not in report.model_dump_json()
    assert "***" in report.kept[0]
    assert "***" in report.problems[0]


def test_record_exit_stamps_the_file_in_place(tmp_path: Path) -> None:
    report = sample("stamped")
    path = write_report(report, tmp_path)
    moved = path.rename(tmp_path / "renamed.json")  # any name: the file itself is rewritten
    when = report.finished + timedelta(seconds=0.7)
    stamped = record_exit(moved, when)
    assert stamped.exited == when
    assert read_report(moved) == stamped
    assert sorted(p.name for p in tmp_path.iterdir()) == ["renamed.json"]
