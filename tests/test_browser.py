"""The shared browser helper: a real headless Chromium loads a page, hovers, clicks, shoots."""

from __future__ import annotations

from pathlib import Path

import pytest

import tests.browser
from tests.browser import Page, browser_page, require_chromium  # noqa: F401

PAGE = """<!doctype html><meta charset="utf-8">
<style>#tip { display: none } #target:hover + #tip { display: block }</style>
<button id="target" data-n="7" onclick="document.title = 'clicked ' + this.dataset.n">go</button>
<div id="tip">hovered</div>
<ul><li>a</li><li>b</li><li>c</li></ul>
"""


def test_page_loads_hovers_clicks_and_shoots(browser_page: Page, tmp_path: Path) -> None:  # noqa: F811
    html = tmp_path / "page.html"
    html.write_text(PAGE, encoding="utf-8")
    browser_page.open_file(html)
    assert browser_page.count("li") == 3
    assert [li.text for li in browser_page.all("li")] == ["a", "b", "c"]

    tip = browser_page.one("#tip")
    assert not tip.is_displayed()
    browser_page.hover(browser_page.one("#target"))
    assert browser_page.wait_for("#tip").text == "hovered"

    browser_page.one("#target").click()
    assert browser_page.driver.title == "clicked 7"

    shot = browser_page.screenshot(tmp_path / "page.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_chromium_the_fixture_skips_saying_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tests.browser, "CHROMIUM", tmp_path / "no-chromium")
    with pytest.raises(pytest.skip.Exception, match="is not installed"):
        require_chromium()
