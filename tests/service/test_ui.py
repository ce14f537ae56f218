"""``GET /ui`` in a real headless Chromium against a real server: a job goes queued →
running → completed with its output streamed live, another is cancelled from the page,
and the token is asked for, kept in the tab's sessionStorage and never put in a URL."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import Page, browser_page  # noqa: F401
from tests.service.conftest import TOKEN, LiveFactory

# On both job stores: SQLite, and PostgreSQL (embedded).
pytestmark = pytest.mark.stores


def until(check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def status_in_page(page: Page, job_id: str) -> str | None:
    found: str | None = page.evaluate(
        "const row = document.querySelector(`tr[data-job='${arguments[0]}']:not(.output)`);"
        "return row ? row.dataset.status : null;",
        job_id,
    )
    return found


def output_in_page(page: Page, job_id: str) -> str:
    text: str = page.evaluate(
        "const pre = document.querySelector(`tr.output[data-job='${arguments[0]}'] pre`);"
        "return pre ? pre.textContent : '';",
        job_id,
    )
    return text


def click(page: Page, selector: str) -> None:
    # In the page, in one step: the table is redrawn every second, a handle could go stale.
    assert page.evaluate(
        "const b = document.querySelector(arguments[0]); if (b) { b.click(); } return !!b;",
        selector,
    ), f"nothing to click at {selector!r}"


def test_the_page_shows_jobs_live_and_cancels_one(
    browser_page: Page,  # noqa: F811
    live: LiveFactory,
    tmp_path: Path,
) -> None:
    page = browser_page
    go_a, go_b = tmp_path / "go-a", tmp_path / "go-b"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with (
        live(max_concurrency=1, pool_size=1) as url,
        httpx.Client(base_url=url, headers=headers, timeout=10) as http,
    ):

        def submit(prompt: str) -> str:
            response = http.post("/execute", json={"prompt": prompt})
            assert response.status_code == 202, response.text
            job_id: str = response.json()["job_id"]
            return job_id

        first = submit(f"print hello-a\nwait {go_a}")
        watched = submit(f"print hello-b\nwait {go_b}\nprint bye-b")
        doomed = submit(f"wait {go_b}")

        page.goto(f"{url}/ui")
        until(lambda: "bearer token" in page.one("#message").text, "the page to ask for a token")
        page.one("#token").send_keys("wrong")
        click(page, "#login button[type=submit]")
        until(lambda: "refused" in page.one("#message").text, "the wrong token to be refused")
        page.one("#token").send_keys(TOKEN)
        click(page, "#login button[type=submit]")

        until(lambda: status_in_page(page, first) == "running", "the first job running")
        assert status_in_page(page, watched) == "queued"
        assert status_in_page(page, doomed) == "queued"
        until(lambda: page.one("#active").text == "1", "the slot gauge")
        assert page.one("#capacity").text == "1"
        assert page.one("#queued").text == "2"

        click(page, f"tr[data-job='{doomed}'] button[data-action=cancel]")
        until(lambda: status_in_page(page, doomed) == "cancelled", "the cancel to show")
        assert http.get(f"/jobs/{doomed}").json()["status"] == "cancelled"

        click(page, f"tr[data-job='{watched}'] button[data-action=output]")
        go_a.touch()
        until(lambda: status_in_page(page, watched) == "running", "the watched job running")
        # Streamed while the job still runs (it waits for go-b): live output, not a record.
        until(lambda: output_in_page(page, watched) == "hello-b\n", "its live output")
        assert http.get(f"/jobs/{watched}").json()["status"] == "running"
        go_b.touch()
        until(lambda: status_in_page(page, watched) == "completed", "the watched job completed")
        until(lambda: output_in_page(page, watched) == "hello-b\nbye-b\n", "its whole output")
        assert status_in_page(page, first) == "completed"

        # The token travelled in headers only: not in the address, kept for this tab.
        assert TOKEN not in page.driver.current_url
        assert page.evaluate("return sessionStorage.getItem('shoal-serve-token')") == TOKEN
        assert page.evaluate("return document.getElementById('token').value") == ""


def test_the_page_is_self_contained_and_locked_down(live: LiveFactory) -> None:
    with live() as url:
        response = httpx.get(f"{url}/ui")
        jobs = httpx.get(f"{url}/jobs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy
    assert "'unsafe-inline'" not in policy
    # Nothing from elsewhere: no external script, style, font or image.
    assert "http://" not in response.text
    assert "https://" not in response.text
    assert jobs.status_code == 401  # the data stays behind the token
