"""``--shoal-shard I/N`` (or ``SHOAL_SHARD``): run one shard of a suite split across
machines by the duration history (see :mod:`shoal.shard`).

Every machine must compute the same partition, and inside one machine every xdist
worker must keep the same tests: xdist aborts a run whose workers collect different
lists, and each worker collects on its own. So, as for the order, the process that owns
the run reads the history once and hands the durations to its workers through
``workerinput``; each worker then deselects the same tests from the same numbers, with
``pytest_deselected``, as ``-k`` does. At ``-n 0`` the single process does both.

The history is the newest run reports in ``--shoal-history`` (default: the reports
directory), so CI can restore them from a cache artifact. A CI run of N shards writes N
reports, so N times as many are read as for the order: the same number of runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest

from shoal.errors import UsageError

# The split itself (shoal.shard, shoal.schedule and the statistics they use) is imported
# where a run is sharded: this module is loaded by every run, for its options.
if TYPE_CHECKING:
    from shoal.plugin.state import RunState
    from shoal.shard import Partition, ShardSpec

ENV: Final = "SHOAL_SHARD"
OPTION: Final = "--shoal-shard"
WORKERINPUT_KEY: Final = "shoal_shard"
SHARD = pytest.StashKey["ShardSpec"]()  # set in the process that owns a sharded run
# Fixture scopes whose set-up a split would pay once per machine that runs part of them.
_GROUPING_SCOPES: Final = ("module", "class")


def addoptions(group: Any) -> None:
    group.addoption(
        OPTION,
        default=None,
        metavar="I/N",
        help=f"run only shard I of N of the suite, split by past durations so that the "
        f"shards finish together (default: ${ENV})",
    )
    group.addoption(
        "--shoal-history",
        default=None,
        metavar="DIR",
        type=Path,
        help="the run reports the shard split and the duration order read their durations "
        "from, e.g. restored from a CI cache (default: the reports directory)",
    )


def spec_from(option: str | None, environ: dict[str, str] | os._Environ[str]) -> ShardSpec | None:
    """The shard asked for: the option, else ``$SHOAL_SHARD`` (empty means not set)."""
    value = environ.get(ENV)
    if option is None and (value is None or not value.strip()):
        return None
    from shoal.shard import parse_spec

    if option is not None:
        return parse_spec(option, OPTION, "the command line")
    return parse_spec(str(value), ENV, "the environment")


def register(config: pytest.Config, state: RunState | None) -> None:
    """Register the side of the split this process plays, if any. Raises UsageError."""
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None:
        handed = workerinput.get(WORKERINPUT_KEY)
        if handed is not None:
            from shoal.shard import parse_spec

            handed_spec = parse_spec(handed["spec"], OPTION, "the controller")
            selection = Selection(handed_spec, dict(handed["durations"]))
            config.pluginmanager.register(selection, "shoal-shard-selection")
        return
    spec = spec_from(config.getoption("shoal_shard", None), os.environ)
    if spec is None or (state is None and not config.getoption("collectonly", False)):
        return  # not sharded, or a run that only looks (--help): no tests to split
    config.stash[SHARD] = spec
    owner = ShardOwner(config, spec, _history_dir(config, state))
    config.pluginmanager.register(owner, "shoal-shard")
    if not _hands_out(config):
        config.pluginmanager.register(Selection(spec, owner.durations()), "shoal-shard-selection")


def _hands_out(config: pytest.Config) -> bool:
    """This process is an xdist controller: its workers collect and select."""
    return config.pluginmanager.hasplugin("xdist") and bool(config.getoption("tx", None))


def _history_dir(config: pytest.Config, state: RunState | None) -> Path:
    given: Path | None = config.getoption("shoal_history", None)
    if given is not None:
        if given.exists() and not given.is_dir():
            raise UsageError(
                "--shoal-history",
                str(given),
                "the command line",
                "expected a directory of run reports",
            )
        return given
    if state is not None:
        return Path(state.plan.reports_dir)
    from shoal.plugin.state import load_settings  # only --co gets here: no plan was built

    settings = load_settings(config)
    return settings.resolve_path(settings.reports_dir)


class ShardOwner:
    """In the process that owns the run: reads the history once, hands it to workers."""

    def __init__(self, config: pytest.Config, spec: ShardSpec, directory: Path) -> None:
        self.config = config
        self.spec = spec
        self.directory = directory
        self._history: tuple[int, dict[str, float]] | None = None

    def history(self) -> tuple[int, dict[str, float]]:
        """(reports read, node id → seconds): read on first use, then fixed for the run,
        so that a worker xdist starts later gets the numbers the first ones got."""
        if self._history is None:
            from shoal import schedule
            from shoal.report import recent_reports

            reports = recent_reports(self.directory, schedule.HISTORY_REPORTS * self.spec.total)
            self._history = (len(reports), schedule.durations(reports))
        return self._history

    def durations(self) -> dict[str, float]:
        return self.history()[1]

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[WORKERINPUT_KEY] = {"spec": str(self.spec), "durations": self.durations()}

    def pytest_report_header(self) -> str:
        from shoal.shard import history_digest

        reports, durations = self.history()
        digest = history_digest(durations, self.spec.total)
        if not durations:
            how = f"no duration history in {self.directory}: equal counts, by node id hash"
        else:
            how = (
                f"by duration history ({len(durations)} tests from {reports} reports in "
                f"{self.directory})"
            )
        return f"shoal: shard {self.spec} {how}; partition digest {digest}"


class Selection:
    """Deselects the tests of the other shards, in every process that collects."""

    def __init__(self, spec: ShardSpec, durations: dict[str, float]) -> None:
        self.spec = spec
        self.durations = durations
        self.partition: Partition | None = None

    # Last, so that it splits what the run will really run (after -k, -m and plugins
    # that deselect); registered before the order, whose trylast hook then runs after
    # this one and orders only this shard's tests.
    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        from shoal.shard import partition

        ids = [item.nodeid for item in items]
        self.partition = partition(ids, self.durations, self.spec.total, groups(items))
        keep = set(self.partition.of(self.spec))
        selected = [item for item in items if item.nodeid in keep]
        deselected = [item for item in items if item.nodeid not in keep]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = selected


def groups(items: list[pytest.Item]) -> dict[str, str]:
    """Node id → the module or class it must share a shard with, for tests that use a
    module- or class-scoped fixture (the broader scope wins); others are not listed."""
    keys: dict[str, str] = {}
    for item in items:
        scopes = _scopes(item)
        node: pytest.Module | pytest.Class | None = None
        if "module" in scopes:
            node = item.getparent(pytest.Module)
        elif "class" in scopes:
            node = item.getparent(pytest.Class)
        if node is not None:
            keys[item.nodeid] = node.nodeid
    return keys


def _scopes(item: pytest.Item) -> set[str]:
    # Not public API, but stable since pytest 3 and what pytest's own --fixtures-per-test
    # reads; an item without it (a doctest, another plugin's item) is a unit of its own.
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return set()
    scopes = set()
    for name in info.names_closure:
        definitions = info.name2fixturedefs.get(name)
        if definitions and definitions[-1].scope in _GROUPING_SCOPES:
            scopes.add(str(definitions[-1].scope))
    return scopes
