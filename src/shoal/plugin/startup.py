"""Where a test process's start-up goes before its first test, as marks for the run report.

Every process that runs tests (each xdist worker, or pytest alone) records:

- when it was created, and when shoal's plugin was imported: the interpreter, pytest and
  the plugins loaded before shoal;
- the time spent in shoal's own start-up hooks: the plan built or taken, the binding
  exported, leases and connections prepared;
- when collection began and ended: conftests and test modules imported.

A worker sends its marks to the controller with its other output. The report splits each
worker's start-up with them (:func:`shoal.report.startup_parts`), its provisioning coming
from the provisioning timings. Only the standard library here: this module is imported
with the plugin, on every pytest start.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest

from shoal import naming

LOADED = time.time()  # this module is imported with the plugin: shoal's load time


@dataclass
class Marks:
    """One process's start-up, in epoch seconds (``shoal_s``: a duration)."""

    worker: str
    loaded: float
    started: float | None = None  # filled in when the marks are read (psutil, once)
    shoal_s: float = 0.0
    collection_start: float | None = None
    collection_end: float | None = None


@dataclass(eq=False)  # a plugin: pluggy keeps plugins in sets
class Recorder:
    """Registered in every process that runs tests; a controller also gathers its workers'."""

    marks: Marks
    workers: dict[str, Marks] = field(default_factory=dict)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_collection(self) -> Generator[None, None, None]:
        self.marks.collection_start = time.time()
        yield
        self.marks.collection_end = time.time()

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # Inside xdist's own session finish, which sends the worker's output after it.
        workeroutput: dict[str, Any] | None = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput[naming.WORKEROUTPUT_STARTUP] = asdict(_finished(self.marks))

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        sent = getattr(node, "workeroutput", {}).get(naming.WORKEROUTPUT_STARTUP)
        if sent:
            self.workers[str(sent["worker"])] = Marks(**sent)

    def all(self) -> list[Marks]:
        """The workers' marks, or this process's own when it ran the tests itself."""
        return list(self.workers.values()) or [_finished(self.marks)]


_MARKS = pytest.StashKey[Marks]()
_RECORDER = "shoal-startup"


def _marks(config: pytest.Config) -> Marks:
    marks = config.stash.get(_MARKS, None)
    if marks is None:
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        marks = Marks(naming.MAIN_WORKER if worker is None else worker, LOADED)
        config.stash[_MARKS] = marks
    return marks


@contextmanager
def shoal_clock(config: pytest.Config) -> Iterator[None]:
    """Count the time spent inside this block as shoal's start-up."""
    marks = _marks(config)
    began = time.perf_counter()
    try:
        yield
    finally:
        marks.shoal_s += time.perf_counter() - began


def register(config: pytest.Config) -> None:
    """Record this process's start-up for the run report (only asked for with one)."""
    if not config.pluginmanager.has_plugin(_RECORDER):
        config.pluginmanager.register(Recorder(_marks(config)), _RECORDER)


def recorded(config: pytest.Config) -> list[Marks]:
    recorder = config.pluginmanager.get_plugin(_RECORDER)
    return recorder.all() if isinstance(recorder, Recorder) else []


def _finished(marks: Marks) -> Marks:
    """``marks`` with the process's creation time (shoal's load time if it cannot be read)."""
    if marks.started is None:
        import psutil

        try:
            marks.started = float(psutil.Process().create_time())
        except psutil.Error:
            marks.started = marks.loaded
    return marks
