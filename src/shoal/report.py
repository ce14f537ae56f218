"""The run report: what one pytest invocation did, where and how long it took.

The plugin builds a :class:`RunReport` in the process that sees every test (the xdist
controller, or the only process at ``-n 0``) and writes it to
``<reports_dir>/<UTC timestamp>_<namespace>.json``; ``shoal report`` reads them back.
Concurrent runs write different files (the namespace is in the name), so reading is a
glob and nothing is ever locked. This module knows nothing about pytest.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from shoal import naming
from shoal.conninfo import mask
from shoal.errors import ShoalError
from shoal.schedule import Distance

Outcome = Literal["passed", "failed", "error", "skipped", "xfailed", "xpassed"]
OUTCOMES: Final[tuple[Outcome, ...]] = (
    "passed",
    "failed",
    "error",
    "skipped",
    "xfailed",
    "xpassed",
)
REPORT_FORMAT: Final = 1


class ReportError(ShoalError):
    """A report could not be written or read; the message names the file."""

    exit_code = 2  # mostly a path the user gave


class _Model(BaseModel):
    # Reports outlive the shoal that wrote them: a newer writer's extra fields are ignored.
    model_config = ConfigDict(frozen=True, extra="ignore")


class TestResult(_Model):
    """One collected test: its outcome across setup, call and teardown."""

    __test__: ClassVar[bool] = False  # not a pytest test class, whatever its name says

    nodeid: str
    outcome: Outcome
    worker: str  # gwN, or main without xdist
    duration_s: float  # the call phase, what the test itself took
    setup_s: float = 0.0  # fixtures, including a worker's schema provisioning on its first test
    teardown_s: float = 0.0
    start: float  # epoch seconds: start of setup
    stop: float  # epoch seconds: end of teardown

    @property
    def total_s(self) -> float:
        return self.setup_s + self.duration_s + self.teardown_s


class WorkerUsage(_Model):
    """How busy one worker was between its first test and the end of the session."""

    worker: str
    tests: int
    busy_s: float  # sum of the tests' setup + call + teardown
    idle_s: float  # wall span from the worker's first test to the session's end, minus busy

    @property
    def span_s(self) -> float:
        return self.busy_s + self.idle_s

    @property
    def utilisation(self) -> float:
        """Busy share of the span, 0..1 (0 for an empty span)."""
        return self.busy_s / self.span_s if self.span_s > 0 else 0.0


class ProvisioningTiming(_Model):
    """One worker's schema in one database: how long it waited for a DDL slot and built."""

    worker: str
    database: str
    slot_wait_s: float
    create_s: float
    setup_s: float
    total_s: float
    claimed: bool = False  # taken ready-made from the warm pool instead of built
    # Epoch seconds when provisioning began, if the writer recorded it; without it the
    # timeline places provisioning inside the setup of the worker's first test that
    # could hold it.
    start: float | None = None
    # What was provisioned: a worker schema, or a whole worker database (Django's
    # database mode); reports written before it existed only ever held schemas.
    kind: Literal["schema", "database"] = "schema"


class Tail(_Model):
    """Where the time between the run's last test and its process exit went, in seconds.

    Absent from reports written before it existed; a figure the writer could not take
    is None.
    """

    teardown_s: float | None = None  # the slowest worker's schema teardown (renames)
    summary_s: float | None = None  # from ``finished`` to unconfigure: the terminal summary
    spawn_s: float | None = None  # starting the detached reaper and refill
    exit_s: float | None = None  # from the spawn to ``exited``: unconfigure and exit


class WorkerStartup(_Model):
    """One test process's start-up before its first test (see shoal.plugin.startup)."""

    worker: str
    started: float  # epoch seconds: the process was created
    loaded: float  # shoal's plugin was imported: the interpreter, pytest, earlier plugins
    shoal_s: float  # inside shoal's start-up hooks: the plan, the binding, connections
    collection_start: float | None = None
    collection_end: float | None = None


class Versions(_Model):
    python: str
    pytest: str
    shoal: str
    xdist: str | None = None


class RunReport(_Model):
    format: int = REPORT_FORMAT
    namespace: str
    args: tuple[str, ...]  # the pytest command line, passwords masked
    versions: Versions
    started: datetime  # UTC
    finished: datetime  # UTC
    exit_status: int
    tests: tuple[TestResult, ...] = ()
    workers: tuple[WorkerUsage, ...] = ()
    provisioning: tuple[ProvisioningTiming, ...] = ()
    # Scheduling figures. Absent from reports written before they existed.
    worker_count: int | None = None  # xdist workers started, or 1 without xdist
    distance: Distance | None = None  # see shoal.schedule.distance
    # What the run left behind, one line each: schemas kept for inspection, and problems
    # such as a failed drop. Absent from reports written before they existed.
    kept: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    # When the process that wrote the report was done (pytest returned), if known:
    # ``finished`` is stamped at session end, before unconfigure and exit.
    exited: datetime | None = None
    # After the last test: see Tail. None in reports older than it.
    tail: Tail | None = None
    # Which shard of a suite split across machines this run was (``--shoal-shard``),
    # as "I/N"; None when it ran the whole suite, and in reports older than sharding.
    shard: str | None = None
    # Each test process's start-up; empty in reports older than it.
    startup: tuple[WorkerStartup, ...] = ()

    @field_validator("args", "kept", "problems")
    @classmethod
    def _mask_passwords(cls, args: tuple[str, ...]) -> tuple[str, ...]:
        # A URL given on the command line (e.g. through -o) must not leak into a file
        # that gets attached to CI artifacts (DESIGN invariant 10).
        return tuple(mask(arg) for arg in args)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, namespace: str) -> str:
        if not naming.is_namespace(namespace):
            raise ValueError(f"{namespace!r} is not a shoal namespace")
        return namespace

    @property
    def duration_s(self) -> float:
        return (self.finished - self.started).total_seconds()

    @property
    def last_test_to_finished_s(self) -> float | None:
        """From the end of the last test to ``finished`` (worker teardown and exit)."""
        if not self.tests:
            return None
        return max(0.0, self.finished.timestamp() - max(t.stop for t in self.tests))

    @property
    def after_finished_s(self) -> float | None:
        """From ``finished`` to ``exited``: summary, spawns, unconfigure and exit."""
        if self.exited is None:
            return None
        return max(0.0, (self.exited - self.finished).total_seconds())

    @property
    def filename(self) -> str:
        return naming.report_filename(self.namespace, self.started)

    def outcome_counts(self) -> dict[Outcome, int]:
        """Every outcome that occurred, in a fixed order, with its count."""
        counts = {outcome: 0 for outcome in OUTCOMES}
        for test in self.tests:
            counts[test.outcome] += 1
        return {outcome: n for outcome, n in counts.items() if n}

    def slowest(self, count: int = 10) -> list[TestResult]:
        return sorted(self.tests, key=lambda t: t.total_s, reverse=True)[:count]

    def provisioning_by_database(self) -> list[DatabaseProvisioning]:
        return provisioning_stats(self.provisioning)


def worker_usage(tests: Iterable[TestResult], session_end: float) -> tuple[WorkerUsage, ...]:
    """Busy and idle time per worker, sorted by worker id.

    Idle counts from the worker's first test, not from session start: a worker's
    startup and collection are not time it could have spent on tests.
    """
    by_worker: dict[str, list[TestResult]] = {}
    for test in tests:
        by_worker.setdefault(test.worker, []).append(test)
    usage = []
    for worker, done in by_worker.items():
        busy = sum(t.total_s for t in done)
        span = max(session_end - min(t.start for t in done), 0.0)
        # Clocks and rounding can make busy a hair longer than the span; idle is never < 0.
        usage.append(
            WorkerUsage(worker=worker, tests=len(done), busy_s=busy, idle_s=max(span - busy, 0.0))
        )
    return tuple(sorted(usage, key=lambda u: worker_order(u.worker)))


def worker_order(worker: str) -> tuple[int, str]:
    """Sort key for worker ids: gw0, gw1, …, gw10 by number, then main, then anything else."""
    try:
        number = naming.worker_number(worker)
    except naming.InvalidName:
        return (2, worker)
    return (1, "") if number is None else (0, f"{number:09d}")


@dataclass(frozen=True)
class Spread:
    p50: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), max(values)) if values else cls(0.0, 0.0)


@dataclass(frozen=True)
class DatabaseProvisioning:
    """Provisioning of one database across the run's workers."""

    database: str
    schemas: int
    total: Spread
    slot_wait: Spread
    create: Spread
    setup: Spread


def provisioning_stats(timings: Iterable[ProvisioningTiming]) -> list[DatabaseProvisioning]:
    by_database: dict[str, list[ProvisioningTiming]] = {}
    for timing in timings:
        by_database.setdefault(timing.database, []).append(timing)
    return [
        DatabaseProvisioning(
            database=database,
            schemas=len(rows),
            total=Spread.of([r.total_s for r in rows]),
            slot_wait=Spread.of([r.slot_wait_s for r in rows]),
            create=Spread.of([r.create_s for r in rows]),
            setup=Spread.of([r.setup_s for r in rows]),
        )
        for database, rows in by_database.items()
    ]


@dataclass(frozen=True)
class StartupParts:
    """Where one worker's start-up went, from its creation to its first test ready."""

    worker: str
    imports_s: float  # the interpreter, pytest and the plugins loaded before shoal
    shoal_s: float  # shoal's start-up hooks: the plan handed off, the binding, connections
    collection_s: float  # conftests and test modules imported, tests collected
    other_s: float  # the rest before the first test: other plugins, pytest itself
    provisioning_s: float  # the worker's schemas (claimed or built)

    @property
    def total_s(self) -> float:
        parts = (self.imports_s, self.shoal_s, self.collection_s, self.other_s)
        return sum(parts) + self.provisioning_s


def startup_parts(report: RunReport) -> list[StartupParts]:
    """Each worker's start-up split into its parts; workers that ran no test are left out."""
    first: dict[str, float] = {}
    for test in report.tests:
        first[test.worker] = min(test.start, first.get(test.worker, test.start))
    provisioning: dict[str, float] = {}
    for timing in report.provisioning:
        provisioning[timing.worker] = provisioning.get(timing.worker, 0.0) + timing.total_s
    parts = []
    for marks in sorted(report.startup, key=lambda m: worker_order(m.worker)):
        if marks.worker not in first:
            continue
        collection = 0.0
        if marks.collection_start is not None and marks.collection_end is not None:
            collection = max(0.0, marks.collection_end - marks.collection_start)
        imports = max(0.0, marks.loaded - marks.started)
        before_first = max(0.0, first[marks.worker] - marks.started)
        parts.append(
            StartupParts(
                worker=marks.worker,
                imports_s=imports,
                shoal_s=marks.shoal_s,
                collection_s=collection,
                other_s=max(0.0, before_first - imports - marks.shoal_s - collection),
                provisioning_s=provisioning.get(marks.worker, 0.0),
            )
        )
    return parts


def write_report(report: RunReport, directory: Path) -> Path:
    """Write ``report`` into ``directory`` (created if missing) atomically; return its path.

    The content goes to a temporary file in the same directory first and is then
    renamed over the final name, so a reader globbing the directory while runs finish
    sees whole reports or none. The temporary name does not match the report glob.
    """
    return _write_atomically(report, directory / report.filename)


def _write_atomically(report: RunReport, target: Path) -> Path:
    directory = target.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise ReportError(f"cannot write the run report into {directory}: {exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(report.model_dump_json(indent=2))
            fh.write("\n")
        os.replace(temporary, target)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise ReportError(f"cannot write the run report {target}: {exc}") from None
    return target


def read_report(path: Path) -> RunReport:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return RunReport.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the file"
        raise ReportError(f"{path} is not a shoal run report ({where}: {first['msg']})") from None


@dataclass(frozen=True)
class ReportFile:
    """A report file found in a directory, known by its name alone (nothing read yet)."""

    path: Path
    started: datetime  # to the second, from the file name
    namespace: str


def list_reports(directory: Path) -> list[ReportFile]:
    """The reports in ``directory``, oldest start first; files that are not reports are skipped.

    File names only carry the second, so runs that started in the same second are put
    in order by the precise start time inside them.
    """
    found = []
    for path in directory.glob(naming.report_glob()):
        parsed = naming.parse_report_filename(path.name)
        if parsed is not None and path.is_file():
            found.append(ReportFile(path=path, started=parsed[0], namespace=parsed[1]))
    per_second: dict[datetime, int] = {}
    for entry in found:
        per_second[entry.started] = per_second.get(entry.started, 0) + 1

    def key(entry: ReportFile) -> tuple[datetime, datetime, str]:
        precise = entry.started
        if per_second[entry.started] > 1:
            # An unreadable file keeps its place by name; reading it will say why.
            with contextlib.suppress(ReportError):
                precise = read_report(entry.path).started
        return (entry.started, precise, entry.namespace)

    return sorted(found, key=key)


def latest_report(directory: Path) -> ReportFile | None:
    reports = list_reports(directory)
    return reports[-1] if reports else None


def recent_reports(directory: Path, count: int) -> list[RunReport]:
    """The newest ``count`` readable reports in ``directory`` that ran a test, oldest
    first: the history the duration order and the shard split learn from."""
    chosen: list[RunReport] = []
    for entry in reversed(list_reports(directory)):
        # A broken or foreign file only costs its own samples.
        with contextlib.suppress(ReportError):
            report = read_report(entry.path)
            if report.tests:
                chosen.append(report)
        if len(chosen) == count:
            break
    return chosen[::-1]


def record_exit(path: Path, when: datetime | None = None, tail: Tail | None = None) -> RunReport:
    """Stamp ``exited`` (default: now, UTC) into the report at ``path``, atomically, with
    the ``tail`` figures when given (the report's own are kept otherwise).

    For the process that ran pytest, once pytest has returned: what happened after the
    session end (unconfigure, the reaper and refill hand-off) then shows on the timeline.
    """
    report = read_report(path)
    update: dict[str, object] = {"exited": when or datetime.now(UTC)}
    if tail is not None:
        update["tail"] = tail
    stamped = report.model_copy(update=update)
    _write_atomically(stamped, path)
    return stamped
