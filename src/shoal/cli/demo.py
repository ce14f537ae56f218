"""``shoal demo``: several invocations of the example suite at once on the embedded server.

Shows what shoal is for: every run green, nothing written outside the runs' schemas,
nothing left behind. With ``--without-shoal`` the same runs share one set of worker
schemas (what schema-per-worker setups without a per-run namespace do), and collide.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

from shoal import naming
from shoal.cli.render import console as render_console
from shoal.cli.settings import chosen_home, home_option
from shoal.config import load_settings
from shoal.errors import ShoalError, UsageError
from shoal.given import find_pyproject
from shoal.pg import schemas
from shoal.pg.connect import admin_connect
from shoal.targets import urls as configured_urls
from shoal.words import plural

# Every run forced into this one namespace reproduces plain schema-per-worker setups.
SHARED_NAMESPACE = "shared"


EXAMPLES = ("multitenant", "django")
# The Django example's databases on the embedded server: Django's test databases of
# `shop` and `shop_ledger` are where its runs' schemas go.
DJANGO_DATABASE = "shop"
DJANGO_TEST_DATABASES = ("test_shop", "test_shop_ledger")


def default_suite(example: str = "multitenant") -> Path:
    # A checkout (or editable install) has the examples next to src/.
    return Path(__file__).resolve().parents[3] / "examples" / example


def django_urls() -> tuple[dict[str, str], dict[str, str]]:
    """The Django example's environment (its server) and its test databases' URLs."""
    from shoal.embedded import EmbeddedServer

    server = EmbeddedServer(chosen_home())
    server.ensure_running()
    env = {"SHOP_DATABASE_URL": server.url(DJANGO_DATABASE)}
    return env, {name: server.url(name) for name in DJANGO_TEST_DATABASES}


@dataclass
class DemoRun:
    index: int
    proc: subprocess.Popen[str]
    started: float
    finished: float | None = None
    # Node id → "passed" or "failed". pytest -v prints a test twice when its teardown
    # errors after it passed; counted once, as failed.
    outcomes: dict[str, str] = field(default_factory=dict)
    output: list[str] = field(default_factory=list)

    @property
    def progress(self) -> dict[str, int]:
        values = list(self.outcomes.values())
        return {"passed": values.count("passed"), "failed": values.count("failed")}

    def follow(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.note(line)
        self.proc.wait()
        self.finished = time.monotonic()

    def note(self, line: str) -> None:
        """Record the outcome a ``pytest -v`` line reports, if it reports one."""
        words = line.split()
        if len(words) < 2:
            return
        # `node OUTCOME`, or under xdist `[gw0] [ 25%] OUTCOME node`.
        node, word = (words[0], words[1]) if "::" in words[0] else (words[-1], words[-2])
        outcome = {"PASSED": "passed", "FAILED": "failed", "ERROR": "failed"}.get(word)
        if "::" in node and outcome is not None and self.outcomes.get(node) != "failed":
            self.outcomes[node] = outcome

    @property
    def namespace(self) -> str | None:
        for line in self.output:
            if line.startswith("shoal: namespace "):
                token = line.split()[2]
                return token if naming.is_namespace(token) else None
        return None

    @property
    def provisioning(self) -> str:
        return next((line.strip() for line in self.output if " provisioned, slowest" in line), "")

    @property
    def status(self) -> str:
        if self.finished is None:
            return "running"
        return "passed" if self.proc.returncode == 0 else f"failed (exit {self.proc.returncode})"


def start_runs(
    suite: Path,
    runs: int,
    workers: int,
    shared: bool,
    extra_env: dict[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
) -> list[DemoRun]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "SHOAL_NAMESPACE"))}
    env.update(extra_env or {})
    home = chosen_home()
    if home is not None:
        env["SHOAL_HOME"] = str(home)
    if shared:
        env[naming.ENV_NAMESPACE_FORCE] = SHARED_NAMESPACE
        env[naming.ENV_NAMESPACE_SHARED] = SHARED_NAMESPACE
    started = []
    for index in range(runs):
        argv = [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-rN",
            "-v",
            "-n",
            str(workers),
            *extra_args,
            str(suite),
        ]
        proc = subprocess.Popen(
            argv,
            cwd=suite,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        run = DemoRun(index=index + 1, proc=proc, started=time.monotonic())
        threading.Thread(target=run.follow, daemon=True).start()
        started.append(run)
    return started


def progress_table(runs: list[DemoRun]) -> Table:
    table = Table("run", "namespace", "passed", "failed", "seconds", "status")
    for run in runs:
        end = run.finished or time.monotonic()
        table.add_row(
            str(run.index),
            run.namespace or "…",
            str(run.progress["passed"]),
            str(run.progress["failed"]),
            f"{end - run.started:.1f}",
            run.status,
        )
    return table


def leftovers(
    suite: Path, namespaces: set[str], urls: dict[str, str] | None = None
) -> tuple[int, int]:
    """(schemas of these runs still present, tables in `public`) across the suite's databases."""
    if urls is None:
        settings = load_settings(flags={"home": chosen_home()}, pyproject=find_pyproject(suite))
        urls = configured_urls(settings)
    schemas_left = public_tables = 0
    for url in urls.values():
        try:
            conn = admin_connect(url, naming.tool_label("demo"))
        except ShoalError:
            continue  # a Django test database that no run created
        with conn:
            for name, _comment in schemas.list_schemas(conn):
                parsed = naming.parse_schema(name)
                schemas_left += bool(parsed and parsed.namespace in namespaces)
            row = conn.execute(
                "SELECT count(*)::int FROM pg_tables WHERE schemaname = 'public'"
            ).fetchone()
            public_tables += cast(int, row[0]) if row else 0
    return schemas_left, public_tables


@click.command("demo")
@click.option("--runs", type=click.IntRange(1, 16), default=4, show_default=True)
@click.option("--workers", type=click.IntRange(0, 16), default=2, show_default=True)
@click.option(
    "--without-shoal",
    is_flag=True,
    help="Run without per-run namespaces: every run uses the same worker schemas.",
)
@click.option(
    "--example",
    type=click.Choice(EXAMPLES),
    default="multitenant",
    show_default=True,
    help="Which example: SQLAlchemy multi-tenant, or Django with pytest-django and no config.",
)
@click.option("--suite", type=click.Path(path_type=Path), default=None, help="Suite to run.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@home_option
def demo_command(
    runs: int, workers: int, without_shoal: bool, example: str, suite: Path | None, as_json: bool
) -> None:
    """Run the example suite several times at once on the embedded server.

    Exit status 0 when the demo showed what it is for: with shoal, every run green,
    nothing in `public`, nothing left behind; with --without-shoal, runs colliding.
    """
    suite = _suite(suite, example)
    console = render_console(stderr=as_json)
    env: dict[str, str] = {}
    urls = None
    args: tuple[str, ...] = ()
    if example == "django":
        # Without shoal: pytest-django alone, as the project ships (--reuse-db).
        env, urls = django_urls()
        args = ("-p", "no:shoal") if without_shoal else ()
    shared = without_shoal and example != "django"
    demo = start_runs(suite, runs, workers, shared, env, args)
    with Live(progress_table(demo), console=console, refresh_per_second=4) as live:
        while any(run.finished is None for run in demo):
            time.sleep(0.25)
            live.update(progress_table(demo))
        live.update(progress_table(demo))
    console.print()
    summary = summarise(demo, suite, without_shoal, urls)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        render_summary(summary, demo, console)
    raise SystemExit(0 if summary["shown"] else 1)


def _suite(given: Path | None, example: str = "multitenant") -> Path:
    source = "command line" if given else f"default (the checkout's examples/{example})"
    suite = (given or default_suite(example)).resolve()
    if not (suite / "pyproject.toml").is_file():
        raise UsageError(
            "--suite",
            str(suite),
            source,
            "no pyproject.toml there; run from a shoal checkout or pass --suite",
        )
    return suite


def summarise(
    demo: list[DemoRun], suite: Path, without_shoal: bool, urls: dict[str, str] | None = None
) -> dict[str, Any]:
    namespaces = {run.namespace for run in demo if run.namespace}
    schemas_left, public_tables = leftovers(suite, namespaces, urls)
    green = sum(run.proc.returncode == 0 for run in demo)
    clean = green == len(demo) and public_tables == 0 and schemas_left == 0
    return {
        "mode": "without-shoal" if without_shoal else "shoal",
        "runs": len(demo),
        "green": green,
        "failed_tests": sum(run.progress["failed"] for run in demo),
        "passed_tests": sum(run.progress["passed"] for run in demo),
        "tables_in_public": public_tables,
        "schemas_left": schemas_left,
        "provisioning": [run.provisioning for run in demo],
        # What the demo is for: shoal's runs stay clean; the others collide.
        "shown": green < len(demo) if without_shoal else clean,
    }


def render_summary(summary: dict[str, Any], demo: list[DemoRun], console: Console) -> None:
    console.print(
        f"{summary['green']}/{summary['runs']} runs green, "
        f"{plural(summary['failed_tests'], 'failed test')}, "
        f"{plural(summary['tables_in_public'], 'table')} in public, "
        f"{plural(summary['schemas_left'], 'schema')} left behind"
    )
    for line in summary["provisioning"]:
        if line:
            console.print(f"  {line}")
    failing = [run for run in demo if run.proc.returncode != 0]
    if summary["mode"] == "without-shoal" and failing:
        errors = [line.strip() for line in failing[0].output if line.startswith("E ")][:5]
        console.print("What the collisions looked like (first failing run):")
        for line in errors:
            console.print(f"  {line}")
