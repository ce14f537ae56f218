"""The timeline page in a real headless Chromium: lanes, blocks, hover, click, zoom, merge."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from shoal.report import RunReport, list_reports, read_report
from shoal.timeline import write
from tests.browser import Page, browser_page  # noqa: F401
from tests.cli.timeline_reports import HOSTILE, STARTED, synthetic
from tests.conftest import Databases, Server
from tests.plugin import inner

LANES = """
    var lanes = document.querySelectorAll('.run .lane.worker');
    return Array.prototype.map.call(lanes, function (lane) {
        return [lane.dataset.worker, lane.querySelectorAll('rect.t').length,
                Number(lane.dataset.tests)];
    });
"""


def open_timeline(page: Page, tmp_path: Path, *runs: RunReport) -> Path:
    out = write(list(runs), tmp_path / "timeline.html")
    page.open_file(out)
    return out


def test_one_lane_per_worker_one_block_per_test(browser_page: Page, tmp_path: Path) -> None:  # noqa: F811
    open_timeline(browser_page, tmp_path, synthetic("lanes", count=13, workers=3))
    lanes = browser_page.evaluate(LANES)
    assert [lane[0] for lane in lanes] == ["gw0", "gw1", "gw2"]
    assert [lane[1] for lane in lanes] == [5, 4, 4]
    assert all(drawn == said for _, drawn, said in lanes)
    assert browser_page.count("rect.t") == 13
    assert browser_page.count("rect.s.provisioning") == 3
    assert browser_page.count(".run") == 1
    # The D bar shows the bound and the parts of the excess.
    assert browser_page.count(".distance .dbar:not(.tailbar) .seg") == 5
    assert browser_page.count(".distance .tailbar .seg.tail") == 1
    assert browser_page.one(".dvalue").text.startswith("D = ")
    # The axis has ticks, drawn by the page's script.
    assert browser_page.count(".ticks span") >= 3


def test_hover_and_click_show_the_node_id_and_durations(
    browser_page: Page,  # noqa: F811
    tmp_path: Path,
) -> None:
    open_timeline(browser_page, tmp_path, synthetic("hover", count=6, nodeids=(HOSTILE,)))
    block = browser_page.one("rect.t")
    assert not browser_page.one("#tip").is_displayed()
    browser_page.hover(block)
    tip = browser_page.wait_for("#tip")
    lines = tip.text.splitlines()
    assert lines[0] == HOSTILE  # as text: nothing of it became markup
    assert "passed on gw0" in lines[1]
    assert "setup 0.300s · call 0.010s · teardown 0.001s" in tip.text

    block.click()
    details = browser_page.one("#details")
    assert details.find_element("css selector", ".node").text == HOSTILE
    assert "call 0.010s" in details.text
    assert "sel" in (block.get_attribute("class") or "")
    # The node id did not inject anything: still only our own script, no image.
    assert browser_page.count("script") == 1
    assert browser_page.count("img") == 0


def test_hover_on_provisioning_says_what_it_was(browser_page: Page, tmp_path: Path) -> None:  # noqa: F811
    open_timeline(browser_page, tmp_path, synthetic("prov", count=4))
    browser_page.hover(browser_page.one("rect.s.provisioning"))
    text = browser_page.wait_for("#tip").text
    assert text.startswith("provisioning platform (built): 0.250s")


def test_a_slowest_row_finds_its_block(browser_page: Page, tmp_path: Path) -> None:  # noqa: F811
    open_timeline(browser_page, tmp_path, synthetic("slowrow", count=20))
    row = browser_page.one(".slowest tbody tr")
    node = row.find_element("css selector", "td.node").text
    row.click()
    selected = browser_page.all("rect.t.sel")
    assert len(selected) == 1
    assert selected[0].get_attribute("data-n") == node
    assert browser_page.one("#details .node").text == node


def test_zoom_widens_every_track(browser_page: Page, tmp_path: Path) -> None:  # noqa: F811
    open_timeline(browser_page, tmp_path, synthetic("zoom", count=30))
    width = "return document.querySelector('.lane.worker .track').getBoundingClientRect().width"
    fit = browser_page.evaluate(width)
    ticks = browser_page.count(".ticks span")
    browser_page.one('.zoom button[data-zoom="16"]').click()
    assert browser_page.evaluate(width) > 15 * fit
    assert browser_page.count(".ticks span") > 4 * ticks
    browser_page.one('.zoom button[data-zoom="1"]').click()
    assert abs(browser_page.evaluate(width) - fit) < 2


def test_merged_runs_are_one_group_each_on_one_axis(browser_page: Page, tmp_path: Path) -> None:  # noqa: F811
    runs = [
        synthetic("first", count=6),
        synthetic("second", count=9, workers=3, started=STARTED + timedelta(seconds=1)),
        synthetic("third", count=4, started=STARTED + timedelta(seconds=2)),
    ]
    open_timeline(browser_page, tmp_path, *runs)
    groups = browser_page.evaluate(
        """return Array.prototype.map.call(document.querySelectorAll('section.run'), function (g) {
            return [g.dataset.namespace, g.querySelectorAll('.lane.worker').length,
                    g.querySelectorAll('rect.t').length];
        });"""
    )
    assert groups == [["first", 2, 6], ["second", 3, 9], ["third", 2, 4]]
    assert browser_page.count(".ticks") == 1  # one axis for all of them
    # A later run's first block starts further right on the shared axis.
    lefts = browser_page.evaluate(
        """return Array.prototype.map.call(document.querySelectorAll('section.run'), function (g) {
            return g.querySelector('rect.t').getBoundingClientRect().left;
        });"""
    )
    assert lefts[0] < lefts[1] < lefts[2]
    browser_page.hover(browser_page.all("section.run")[1].find_element("css selector", "rect.t"))
    assert "(run 2)" in browser_page.wait_for("#tip").text
    assert browser_page.count(".runs tbody tr") == 3


def test_ten_thousand_tests_load_quickly(browser_page: Page, tmp_path: Path) -> None:  # noqa: F811
    began = time.perf_counter()
    open_timeline(browser_page, tmp_path, synthetic("large", count=10_000, workers=8))
    took = time.perf_counter() - began
    assert browser_page.count("rect.t") == 10_000
    assert browser_page.count(".lane.worker") == 8
    # Generous for a shared 2-core machine; a per-block listener or a DOM built test by
    # test in script would take several times this.
    assert took < 8.0, f"{took:.2f}s to write and load 10,000 tests"
    browser_page.hover(browser_page.all("rect.t")[-1])
    assert browser_page.wait_for("#tip").text.startswith("tests/test_mod")


SUITE = """
import time
import pytest

@pytest.mark.parametrize("n", range(6))
def test_quick(shoal_databases, n):
    with shoal_databases["app"].connect() as conn:
        conn.execute("select 1")

def test_slow(shoal_databases):
    time.sleep(0.6)

def test_slower():
    time.sleep(0.9)

def test_fails():
    assert False
"""


def test_the_timeline_of_a_real_run(
    browser_page: Page,  # noqa: F811
    tmp_path: Path,
    embedded: Server,
    embedded_databases: Databases,
) -> None:
    project = inner.write_project(
        tmp_path / "project",
        {"app": {"url": embedded.url(embedded_databases.new("timeline"))}},
        {"test_mixed.py": SUITE},
        shoal={"reports_dir": "reports"},
    )
    result = inner.run(project, "-n", "2", "--shoal-report")
    assert result.returncode == 1, result.output  # one test fails on purpose
    (entry,) = list_reports(project / "reports")
    report = read_report(entry.path)
    open_timeline(browser_page, tmp_path, report)

    lanes = browser_page.evaluate(LANES)
    assert sorted(lane[0] for lane in lanes) == ["gw0", "gw1"]
    assert sum(lane[1] for lane in lanes) == len(report.tests) == 9
    assert browser_page.count("rect.t.failed") == 1
    assert browser_page.count("rect.s.provisioning") == 2  # one schema per worker
    slowest = browser_page.one(".slowest tbody td.node").text
    assert slowest == "test_mixed.py::test_slower"
