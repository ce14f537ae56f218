"""Make docs/timeline.png: a real run of a small skewed suite at -n 2, drawn by
``shoal report --html`` and photographed in headless Chromium, the slowest test hovered.

    .venv/bin/python docs/timeline_screenshot.py          # from docs/timeline_report.json
    .venv/bin/python docs/timeline_screenshot.py --run    # run the suite again first

``--run`` replaces docs/timeline_report.json with the report of a fresh run.

Needs the test extra (selenium) and Debian's chromium + chromium-driver; the run uses
the embedded PostgreSQL server, like the test suite.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import open_page  # noqa: E402

SCHEMA = "\n".join(
    f"create table t{i} (id bigint primary key, name text not null, created timestamptz);"
    for i in range(120)
)  # enough tables that building a worker schema takes a visible moment

SUITE = """
import time
import pytest

@pytest.mark.parametrize("n", range(24))
def test_query(shoal_databases, n):
    with shoal_databases["app"].connect() as conn:
        conn.execute("select count(*) from t1")
    time.sleep(0.05 * (n % 5))

@pytest.mark.parametrize("size", [1, 2, 3])
def test_import_batch(size):
    time.sleep(0.6 * size)

def test_report_export():
    time.sleep(2.6)

def test_refund_rounding():
    assert round(2.675, 2) == 2.68, "floating point"

@pytest.mark.skip(reason="needs the payment sandbox")
def test_payment_sandbox():
    pass
"""


REPORT = ROOT / "docs" / "timeline_report.json"
PICTURE = ROOT / "docs" / "timeline.png"


def run_suite(report: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "pyproject.toml").write_text(
            textwrap.dedent(
                """
                [tool.shoal]
                reports_dir = "reports"
                pool_size = 0
                [tool.shoal.databases.app]
                setup = "sql:schema.sql"
                """
            )
        )
        (project / "schema.sql").write_text(SCHEMA + "\n")
        (project / "test_shop.py").write_text(SUITE)
        subprocess.run(
            [sys.executable, "-m", "pytest", "-n", "2", "--shoal-report", "-p", "no:cacheprovider"],
            cwd=project,
            check=False,
        )
        (written,) = (project / "reports").glob("*.json")
        shutil.copyfile(written, report)


def shoot(report: Path, out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "timeline.html"
        shoal = [sys.executable, "-c", "from shoal.cli import main; main()"]
        subprocess.run([*shoal, "report", str(report), "--html", "-o", str(html)], check=True)
        # The top of the page: the run, its lanes and the D bar with its parts.
        with open_page(window=(1200, 860)) as page:
            page.open_file(html)
            slowest = page.one(".slowest tbody tr").get_attribute("data-ref")
            page.hover(page.one(f"#{slowest}"))
            page.wait_for("#tip")
            page.screenshot(out, full_page=False)
    print(f"wrote {out}")


if __name__ == "__main__":
    if "--run" in sys.argv[1:]:
        run_suite(REPORT)
    shoot(REPORT, PICTURE)
