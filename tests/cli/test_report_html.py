"""`shoal report --html`: the timeline file, its escaping, merging, size and errors."""

from __future__ import annotations

import html
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from shoal.cli import cli
from shoal.report import list_reports, read_report, write_report
from shoal.timeline import render
from tests.cli.test_report import sample
from tests.cli.timeline_reports import HOSTILE, STARTED, synthetic
from tests.plugin import inner


def shoal(*args: str) -> Result:
    """Through the top-level group, so its error boundary is what a user sees."""
    return CliRunner().invoke(cli, ["report", *args])


def test_html_next_to_the_report_by_default(tmp_path: Path) -> None:
    path = write_report(synthetic("nextto"), tmp_path)
    result = shoal(str(path), "--html")
    assert result.exit_code == 0, result.output
    out = path.with_suffix(".html")
    assert f"timeline (12 tests) written to {out}" in result.output
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    assert page.count('class="lane worker"') == 2
    assert len(re.findall(r'<rect[^>]* class="t ', page)) == 12
    assert "Distance to the limit" in page
    assert "slowest tests" in page
    assert "Provisioning per database" in page


def test_latest_report_in_the_directory_and_an_explicit_output(tmp_path: Path) -> None:
    write_report(synthetic("older"), tmp_path / "r")
    write_report(
        synthetic("newer", started=STARTED + timedelta(minutes=1), count=3), tmp_path / "r"
    )
    out = tmp_path / "t.html"
    result = shoal("--dir", str(tmp_path / "r"), "--latest", "--html", "-o", str(out))
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert "newer" in page
    assert "older" not in page

    (tmp_path / "outdir").mkdir()
    result = shoal("--dir", str(tmp_path / "r"), "--html", "-o", str(tmp_path / "outdir"))
    assert result.exit_code == 0, result.output
    assert [p.suffix for p in (tmp_path / "outdir").iterdir()] == [".html"]


def test_output_dash_is_stdout(tmp_path: Path) -> None:
    path = write_report(synthetic("tostdout"), tmp_path)
    result = shoal(str(path), "--html", "-o", "-")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("<!doctype html>")
    assert result.stdout.rstrip().endswith("</html>")


def test_self_contained_no_network() -> None:
    page = render([synthetic("offline")])
    assert "<style>" in page
    assert "<script>" in page
    assert not re.search(r"(src|href)\s*=", page)
    assert "http://" not in page
    assert "https://" not in page
    assert "@import" not in page


def test_every_report_string_is_escaped() -> None:
    report = synthetic("escaped", nodeids=(HOSTILE,), count=4)
    evil_arg = "--opt=</p><img onerror=x>"
    report = report.model_copy(
        update={
            "args": (*report.args, evil_arg),
            "kept": ("db: schema <b>kept</b>",),
            "problems": ('drop "x" & <y> failed',),
        }
    )
    page = render([report])
    assert "<script>alert(1)" not in page
    assert "<img" not in page
    assert "<b>kept</b>" not in page
    assert html.escape(HOSTILE, quote=True) in page  # in the block's data-n and the table
    assert html.escape(evil_arg) in page
    assert "drop &quot;x&quot; &amp; &lt;y&gt; failed" in page
    assert "ünïcødé-✓" in page  # kept as text, UTF-8
    # The only script is our own, and it is closed exactly once.
    assert page.count("<script>") == 1
    assert page.count("</script>") == 1


def test_an_old_report_without_figures_still_renders(tmp_path: Path) -> None:
    path = write_report(sample("olderformat"), tmp_path)
    result = shoal(str(path), "--html")
    assert result.exit_code == 0, result.output
    page = path.with_suffix(".html").read_text(encoding="utf-8")
    assert "has no scheduling figures" in page
    assert page.count('class="lane worker"') == 2


def test_merge_puts_every_run_on_one_axis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shard = tmp_path / "shard"
    write_report(synthetic("runone"), shard)
    write_report(synthetic("runtwo", started=STARTED + timedelta(seconds=2), count=5), shard)
    other = write_report(synthetic("runthree", started=STARTED + timedelta(seconds=1)), tmp_path)
    (shard / "20260301T130000Z_broken.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    result = shoal("--html", "--merge", str(shard), str(other), str(other))
    assert result.exit_code == 0, result.output
    assert "skipped:" in result.stderr
    assert "20260301T130000Z_broken.json" in result.stderr
    assert "timeline (3 runs, 29 tests) written to timeline.html" in result.stdout
    page = (tmp_path / "timeline.html").read_text(encoding="utf-8")
    namespaces = re.findall(r'<section class="run" data-run="\d+" data-namespace="(\w+)"', page)
    assert namespaces == ["runone", "runthree", "runtwo"]  # in start order, the duplicate once
    assert "(+1.00s)" in page
    assert "(+2.00s)" in page


def test_merge_defaults_to_the_reports_directory(tmp_path: Path) -> None:
    write_report(synthetic("dirone"), tmp_path / "r")
    write_report(synthetic("dirtwo", started=STARTED + timedelta(seconds=1)), tmp_path / "r")
    out = tmp_path / "m.html"
    result = shoal("--dir", str(tmp_path / "r"), "--html", "--merge", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8").count('<section class="run"') == 2


def test_ten_thousand_tests_render_quickly(tmp_path: Path) -> None:
    report = synthetic("large", count=10_000, workers=8)
    path = write_report(report, tmp_path)
    began = time.perf_counter()
    result = shoal(str(path), "--html")
    took = time.perf_counter() - began
    assert result.exit_code == 0, result.output
    page = path.with_suffix(".html").read_text(encoding="utf-8")
    assert len(re.findall(r'<rect[^>]* class="t ', page)) == 10_000
    assert took < 5.0, f"{took:.2f}s to read and render 10,000 tests"
    assert len(page) < 4_000_000  # about 350 bytes a test


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["{missing}", "--html"], "no such file, expected a run report"),
        (["{notreport}", "--html"], "is not a shoal run report"),
        (["{directory}", "--html"], "is a directory, expected a run report file"),
        (["{report}", "--html", "-o", "{blocked}"], "cannot write the timeline to {blocked}"),
        (["{report}", "--html", "-o", "{nodir}"], "cannot write the timeline to {nodir}"),
        (["--html", "--merge", "{empty}"], "no run reports in {empty}"),
        (["--html", "--merge", "{missing}"], "{missing}: no such file or directory"),
        (["--html", "--dir", "{empty}"], "no run reports in {empty}"),
        (["{report}", "--merge", "-o", "x.html"], "-o/--output goes with --html"),
        (["{report}", "-o", "x.html"], "-o/--output goes with --html"),
        (["{report}", "{report}", "--html"], "give one PATH (or --html --merge for several)"),
        (["{report}", "--html", "--json"], "--html does not go with --json or --all"),
    ],
)
def test_mistakes_are_errors_naming_the_path(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    places = {
        "report": str(write_report(synthetic("mistakes"), tmp_path / "r")),
        "missing": str(tmp_path / "20260301T120000Z_missing.json"),
        "notreport": str(tmp_path / "20260301T120000Z_other.json"),
        "directory": str(tmp_path / "r"),
        "empty": str(tmp_path / "empty"),
        "blocked": str(tmp_path / "a-file" / "out.html"),  # a path under a regular file
        "nodir": str(tmp_path / "no" / "such" / "dir" / "out.html"),
    }
    Path(places["notreport"]).write_text('{"some": "other json"}')
    Path(places["empty"]).mkdir()
    (tmp_path / "a-file").write_text("")
    result = shoal(*(arg.format(**places) for arg in args))
    assert result.exit_code == 2, result.output
    assert "Error:" in result.output
    assert expected.format(**places) in result.output
    assert "Traceback" not in result.output


def test_merge_of_two_real_runs_at_once_on_one_server(tmp_path: Path) -> None:
    suite = "import time\n\ndef test_a():\n    time.sleep(0.3)\n\ndef test_b():\n    pass\n"
    projects = [
        inner.write_project(tmp_path / name, {}, {"test_it.py": suite}, shoal={"reports_dir": "r"})
        for name in ("one", "two")
    ]
    running = [inner.start(project, "-n", "2", "--shoal-report") for project in projects]
    results = [inner.finish(project, proc) for project, proc in zip(projects, running, strict=True)]
    assert all(r.returncode == 0 for r in results), [r.output for r in results]
    out = tmp_path / "both.html"
    result = shoal("--html", "--merge", *(str(p / "r") for p in projects), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "timeline (2 runs, 4 tests)" in result.output
    page = out.read_text(encoding="utf-8")
    assert page.count('<section class="run"') == 2
    assert page.count('class="lane worker"') == 4
    (first,), (second,) = (list_reports(p / "r") for p in projects)
    a, b = read_report(first.path), read_report(second.path)
    assert a.started < b.finished
    assert b.started < a.finished  # they did overlap: one axis shows both at once


def test_a_run_without_tests_renders_and_says_so() -> None:
    page = render([synthetic("notests", count=0)])
    assert 'class="lane worker"' not in page
    assert "no tests" in page
    assert "has no scheduling figures" in page
    assert "No schema was provisioned" in page
