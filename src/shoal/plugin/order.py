"""Duration-aware test order for xdist's ``worksteal`` and ``load`` (``--shoal-order``).

xdist aborts a run when its workers collect different lists, and every worker collects
on its own. So the workers must not each look at the reports directory: a concurrent run
can finish and write a report between two workers' reads. The controller reads the
history once and hands the durations themselves to every worker through
``workerinput``; each worker then computes the same order from the same numbers.

Where the history comes from: the last few run reports (``--shoal-report``; ``shoal run``
always writes them). They already hold every test's duration, each run writes its own
file atomically under a namespaced name (DESIGN invariant 9), and nobody ever rewrites
one. A separate history file would need read-modify-write by concurrent runs, and so a
lock or lost updates, for no information the reports do not already carry.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest

from shoal import schedule
from shoal.plugin.state import RunState

if TYPE_CHECKING:
    from shoal.report import RunReport

WORKERINPUT_KEY: Final = "shoal_order"
ORDERED_DISTS: Final = ("worksteal", "load")


def register(config: pytest.Config, state: RunState) -> None:
    """Register the side of the ordering this process plays, if any."""
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None:
        plan = workerinput.get(WORKERINPUT_KEY)
        if plan is not None:
            config.pluginmanager.register(WorkerOrder(plan), "shoal-order")
        return
    if (
        config.getoption("shoal_order") == "duration"
        and config.pluginmanager.hasplugin("xdist")
        and config.getoption("dist", "no") in ORDERED_DISTS
        and bool(config.getoption("tx", None))
    ):
        config.pluginmanager.register(ControllerOrder(config, state), "shoal-order")


def read_history(
    state: RunState, count: int = schedule.HISTORY_REPORTS, directory: Path | None = None
) -> list[RunReport]:
    """The newest ``count`` readable reports that ran at least one test, oldest first,
    from ``directory`` (default: the reports directory)."""
    # Here, not at module level: only the controller reads reports, and every import in
    # an xdist worker delays its first test.
    from shoal.report import recent_reports

    return recent_reports(directory or Path(state.plan.reports_dir), count)


class ControllerOrder:
    """Chooses the history once per run and hands it to every worker."""

    def __init__(self, config: pytest.Config, state: RunState) -> None:
        self.config = config
        self.state = state
        self._history: tuple[int, dict[str, float]] | None = None

    def history(self) -> tuple[int, dict[str, float]]:
        """(reports read, node id → seconds), read on first use and then fixed.

        Fixed for the run: a worker xdist starts later (replacing a crashed one) must
        get the same numbers as the first ones, or its collection would differ.
        """
        if self._history is None:
            # --shoal-history (reports restored from a CI cache) feeds the order too.
            given: Path | None = self.config.getoption("shoal_history", None)
            reports = read_history(self.state, directory=given)
            self._history = (len(reports), schedule.durations(reports))
        return self._history

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        _, durations = self.history()
        node.workerinput[WORKERINPUT_KEY] = {
            "durations": durations,
            "dist": self.config.getoption("dist"),
            "workers": int(node.workerinput["workercount"]),
            "maxschedchunk": self.config.getoption("maxschedchunk", None),
        }

    def pytest_report_header(self) -> str:
        reports, durations = self.history()
        if not durations:
            return "shoal: order: no duration history yet, collection order kept"
        return (
            f"shoal: order: longest first by duration history "
            f"({len(durations)} tests from the last {reports} reports)"
        )


class WorkerOrder:
    """Reorders this worker's collection with the controller's history."""

    def __init__(self, plan: dict[str, Any]) -> None:
        self.durations: dict[str, float] = dict(plan["durations"])
        self.dist = str(plan["dist"])
        self.workers = int(plan["workers"])
        chunk = plan.get("maxschedchunk")
        self.maxschedchunk = None if chunk is None else int(chunk)

    # Last, so that it sees the final list: after deselection (-k, -m) and after any
    # plugin that reorders (which it overrides, identically in every worker).
    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        ids = [item.nodeid for item in items]
        if len(set(ids)) != len(ids):
            return  # --keep-duplicates: node ids no longer name one item each
        sizes = None
        if self.dist == "load":
            sizes = schedule.load_blocks(len(ids), self.workers, self.maxschedchunk)
        ordered = schedule.order(ids, self.durations, self.workers, sizes)
        by_id = {item.nodeid: item for item in items}
        items[:] = [by_id[nodeid] for nodeid in ordered]
