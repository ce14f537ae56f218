"""Collects every test report of the run and writes the run report at session end.

Registered only with ``--shoal-report`` and only in the process that sees every test:
the xdist controller (workers' reports reach it through ``pytest_runtest_logreport``)
or the single process at ``-n 0``.
"""

from __future__ import annotations

import atexit
import contextlib
import platform
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from shoal.plugin import startup
from shoal.plugin.state import RunState
from shoal.schedule import Distance, distance

# The report's models (pydantic: about 0.1 s to import and build) are imported where they
# are used, from the first test's report on: the collector is registered at configure,
# with the run's start-up still ahead.
if TYPE_CHECKING:
    from shoal.report import Outcome, Tail, TestResult, Versions


@dataclass
class _Pending:
    nodeid: str
    worker: str
    start: float
    stop: float
    outcome: Outcome | None = None
    setup_s: float = 0.0
    call_s: float = 0.0
    teardown_s: float = 0.0


def worker_of(report: pytest.TestReport, default: str) -> str:
    """The xdist worker that ran ``report``'s test (``default`` outside xdist).

    The controller sets ``report.node`` to the WorkerController for every report it
    relays, including the synthetic one for a test that crashed its worker; the
    ``worker_id`` the worker serialises into its reports is the fallback.
    """
    node = getattr(report, "node", None)
    gateway = getattr(node, "gateway", None)
    if gateway is not None:
        return str(gateway.id)
    worker_id = getattr(report, "worker_id", None)
    return str(worker_id) if worker_id else default


def phase_outcome(report: pytest.TestReport) -> Outcome | None:
    """What one phase says about the test's outcome; None when it says nothing new."""
    xfail = hasattr(report, "wasxfail")
    if report.when == "setup":
        if report.failed:
            return "error"
        return ("xfailed" if xfail else "skipped") if report.skipped else None
    if report.when == "teardown":
        return "error" if report.failed else None
    # The call phase, or the "???" phase of a test whose worker crashed.
    if report.passed:
        return "xpassed" if xfail else "passed"
    if report.failed:
        return "failed"
    return "xfailed" if xfail else "skipped"


class ReportCollector:
    def __init__(self, state: RunState, config: pytest.Config) -> None:
        self.state = state
        self.config = config
        self.started = datetime.now(UTC)
        self.results: list[TestResult] = []
        self.path: Path | None = None
        self.distance: Distance | None = None
        self.worker_count = 1  # until xdist says how many workers it starts
        self._open: dict[tuple[str, str], _Pending] = {}
        self.tail: Tail | None = None
        self.finished: float | None = None  # epoch seconds of the report's ``finished``

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        # Called once per worker started, replacements of crashed workers included; the
        # count xdist planned is what the bound divides by.
        self.worker_count = int(node.workerinput["workercount"])

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        key = (worker_of(report, self.state.worker), report.nodeid)
        pending = self._open.get(key)
        if pending is None or report.when == "setup":
            if pending is not None:  # the same node id run again (a rerun plugin)
                self._close(pending)
            # The synthetic report for a test that crashed its worker carries no times.
            start = report.start or time.time()
            pending = _Pending(report.nodeid, key[0], start=start, stop=report.stop or start)
            self._open[key] = pending
        pending.stop = max(pending.stop, report.stop)
        if report.when == "setup":
            pending.setup_s = report.duration
        elif report.when == "teardown":
            pending.teardown_s = report.duration
        else:
            pending.call_s = report.duration
        outcome = phase_outcome(report)
        # A failing teardown turns a passed or skipped test into an error (pytest counts
        # both); it never hides a failure the test itself already had.
        if outcome is not None and pending.outcome not in ("failed", "error"):
            pending.outcome = outcome
        if report.when not in ("setup", "call"):  # teardown, or a crash: nothing follows
            self._close(self._open.pop(key))

    def _close(self, pending: _Pending) -> None:
        from shoal.report import TestResult

        if pending.outcome is None:
            return  # set up but never run (the session was interrupted): not a result
        self.results.append(
            TestResult(
                nodeid=pending.nodeid,
                outcome=pending.outcome,
                worker=pending.worker,
                duration_s=pending.call_s,
                setup_s=pending.setup_s,
                teardown_s=pending.teardown_s,
                start=pending.start,
                stop=pending.stop,
            )
        )

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        from shoal.report import (
            ProvisioningTiming,
            ReportError,
            RunReport,
            Tail,
            WorkerStartup,
            worker_usage,
            write_report,
        )

        for pending in self._open.values():
            self._close(pending)
        self._open.clear()
        finished = datetime.now(UTC)
        report = RunReport(
            namespace=self.state.namespace.token,
            args=tuple(self.config.invocation_params.args),
            versions=_versions(self.config),
            started=self.started,
            finished=finished,
            exit_status=int(exitstatus),
            tests=tuple(self.results),
            workers=worker_usage(self.results, finished.timestamp()),
            provisioning=tuple(
                ProvisioningTiming(worker=worker, **asdict(timing))
                for worker, timings in self.state.timings_by_worker().items()
                for timing in timings
            ),
            worker_count=self.worker_count,
            kept=tuple(self.state.kept),
            problems=tuple(self.state.problems),
            shard=_shard(self.config),
            startup=tuple(WorkerStartup(**asdict(m)) for m in startup.recorded(self.config)),
            tail=Tail(teardown_s=max(self.state.teardown_s.values(), default=None)),
        )
        self.distance = distance(report)
        report = report.model_copy(update={"distance": self.distance})
        directory = Path(self.state.plan.reports_dir)
        try:
            self.path = write_report(report, directory)
        except ReportError as exc:
            self.state.problems.append(str(exc))
        self.tail = report.tail
        self.finished = finished.timestamp()

    def after_run(self, unconfigured: float, spawned: float) -> None:
        """The tail's figures once the after-run processes are started (epoch seconds:
        when unconfigure began, when the spawns were done); ``exited`` and the exit
        figure are stamped into the report as the interpreter exits."""
        from shoal.report import Tail, record_exit

        if self.path is None or self.finished is None:
            return
        tail = (self.tail or Tail()).model_copy(
            update={
                "summary_s": max(0.0, unconfigured - self.finished),
                "spawn_s": max(0.0, spawned - unconfigured),
            }
        )
        path = self.path

        def stamp() -> None:
            now = datetime.now(UTC)
            exit_s = max(0.0, now.timestamp() - spawned)
            # Best effort: the report stays whole without the stamp (a directory removed
            # meanwhile, a disk gone full).
            with contextlib.suppress(Exception):
                record_exit(path, now, tail.model_copy(update={"exit_s": exit_s}))

        # Registered last, run first among what is registered by then; what runs after it
        # (interpreter finalisation) is the only part of the exit no figure covers.
        atexit.register(stamp)

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.distance is not None:
            for line in self.distance.summary():
                terminalreporter.write_line(f"shoal: {line}")
        if self.path is not None:
            terminalreporter.write_line(f"shoal: report written to {self.path}")


def _shard(config: pytest.Config) -> str | None:
    from shoal.plugin.shard import SHARD

    spec = config.stash.get(SHARD, None)
    return None if spec is None else str(spec)


def _versions(config: pytest.Config) -> Versions:
    from shoal.report import Versions

    xdist = None
    if config.pluginmanager.hasplugin("xdist"):
        xdist = _version("pytest-xdist")
    return Versions(
        python=platform.python_version(),
        pytest=pytest.__version__,
        shoal=_version("shoal") or "unknown",
        xdist=xdist,
    )


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
