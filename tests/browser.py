"""Headless Debian Chromium for tests that need a real browser.

Two ways in, for any test package:

* the ``browser_page`` fixture: ``from tests.browser import browser_page  # noqa: F401``
  in the test module (or its conftest), then ask for ``browser_page``;
* the context manager :func:`open_page`, for tests that want several pages or their
  own lifetime.

Both drive Debian's ``/usr/bin/chromium`` through Debian's ``/usr/bin/chromedriver``
(Selenium, with the driver path given so Selenium Manager never runs and nothing is
downloaded). The two binaries come from one Debian source package, so their versions
always match. Without ``/usr/bin/chromium`` the fixture skips and says why; ``.ci/run``
installs it, so CI never skips.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

CHROMIUM: Final = Path("/usr/bin/chromium")
CHROMEDRIVER: Final = Path("/usr/bin/chromedriver")
# No network beyond what the page itself asks for: no updates, no sync, no QUIC probes,
# no first-run pages; a sandbox cannot start as root in a container.
FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
WINDOW: Final = (1280, 900)
MISSING: Final = f"{CHROMIUM} is not installed (apt-get install chromium chromium-driver)"


class Page:
    """One browser tab: a thin layer over Selenium's WebDriver for what tests need.

    ``driver`` is the WebDriver itself, for anything the helpers here do not cover.
    """

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver

    def goto(self, url: str) -> None:
        """Load ``url`` (``http://…`` or ``file://…``) and wait for its load event."""
        self.driver.get(url)

    def open_file(self, path: Path) -> None:
        self.goto(path.resolve().as_uri())

    def all(self, selector: str) -> list[WebElement]:
        """Every element matching the CSS ``selector``, in document order."""
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, selector))

    def one(self, selector: str) -> WebElement:
        """The first element matching ``selector``; fails the test if there is none."""
        found = self.all(selector)
        assert found, f"no element matches {selector!r}"
        return found[0]

    def count(self, selector: str) -> int:
        # Counted in the page: fetching 10,000 element handles one by one takes seconds.
        return int(self.evaluate(f"return document.querySelectorAll({selector!r}).length"))

    def evaluate(self, script: str, *args: Any) -> Any:
        """Run ``script`` as a function body in the page (``return`` gives the result)."""
        return self.driver.execute_script(script, *args)

    def hover(self, element: WebElement) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(self.driver).move_to_element(element).perform()

    def wait_for(self, selector: str, timeout: float = 10.0) -> WebElement:
        """The first element matching ``selector`` once it is displayed."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.wait import WebDriverWait

        located = expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, selector))
        element: WebElement = WebDriverWait(self.driver, timeout).until(located)
        return element

    def resize(self, width: int, height: int) -> None:
        self.driver.set_window_size(width, height)

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        """Save a PNG of the page; ``full_page`` first grows the window to the page height."""
        if full_page:
            height = int(self.evaluate("return document.documentElement.scrollHeight"))
            width = self.driver.get_window_size()["width"]
            self.resize(width, max(height, 200))
        path.write_bytes(self.driver.get_screenshot_as_png())
        return path


@contextmanager
def open_page(window: tuple[int, int] = WINDOW, extra_flags: Sequence[str] = ()) -> Iterator[Page]:
    """A fresh headless Chromium (its own user-data directory) with one tab.

    Raises :class:`FileNotFoundError` when Chromium or chromedriver is missing; the
    fixture turns a missing Chromium into a skip.
    """
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not binary.exists():
            raise FileNotFoundError(f"{binary} is not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="shoal-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (*FLAGS, *extra_flags):
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.add_argument(f"--window-size={window[0]},{window[1]}")
        driver = webdriver.Chrome(
            service=Service(executable_path=str(CHROMEDRIVER)), options=options
        )
        try:
            yield Page(driver)
        finally:
            driver.quit()


def require_chromium() -> None:
    """Skip the calling test, saying why, when Debian's Chromium is not installed."""
    if not CHROMIUM.exists():
        pytest.skip(MISSING)


@pytest.fixture
def browser_page() -> Iterator[Page]:
    """A :class:`Page` in a fresh headless Chromium; skips when Chromium is not installed."""
    require_chromium()
    with open_page() as page:
        yield page
