"""Made-up run reports for timeline tests: any size, any node ids, with scheduling figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shoal.report import ProvisioningTiming, RunReport, TestResult, Versions, worker_usage
from shoal.schedule import distance

STARTED = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
HOSTILE = "tests/test_x.py::test_it[<script>alert(1)</script>-\"'&-ünïcødé-✓]"


def synthetic(
    namespace: str,
    count: int = 12,
    workers: int = 2,
    started: datetime = STARTED,
    nodeids: tuple[str, ...] = (),
) -> RunReport:
    """``count`` tests dealt round-robin to ``workers``, each worker running its own back to
    back after a 0.5 s start-up; test i takes 0.01 + (i % 7) / 100 s. ``nodeids`` replace
    the first generated ids."""
    base = started.timestamp() + 0.5
    clocks = [base] * workers
    tests = []
    for i in range(count):
        worker = i % workers
        call = 0.01 + (i % 7) / 100
        setup = 0.3 if i < workers else 0.001  # the first test of each worker provisions
        start = clocks[worker]
        nodeid = nodeids[i] if i < len(nodeids) else f"tests/test_mod{i // 100}.py::test_{i}"
        tests.append(
            TestResult(
                nodeid=nodeid,
                outcome="failed" if i % 50 == 49 else "passed",
                worker=f"gw{worker}",
                duration_s=call,
                setup_s=setup,
                teardown_s=0.001,
                start=start,
                stop=start + setup + call + 0.001,
            )
        )
        clocks[worker] = start + setup + call + 0.001 + 0.002  # a small gap between tests
    finished = datetime.fromtimestamp(max(clocks) + 0.4, UTC)
    report = RunReport(
        namespace=namespace,
        args=("-n", str(workers), "--shoal-report"),
        versions=Versions(python="3.11.7", pytest="9.2.0", shoal="0.1.0", xdist="3.8.0"),
        started=started,
        finished=finished,
        exited=finished + timedelta(seconds=0.2),
        exit_status=1 if count >= 50 else 0,
        tests=tuple(tests),
        workers=worker_usage(tests, finished.timestamp()),
        provisioning=tuple(
            ProvisioningTiming(
                worker=f"gw{w}",
                database="platform",
                slot_wait_s=0.05,
                create_s=0.05,
                setup_s=0.15,
                total_s=0.25,
            )
            for w in range(min(workers, count))
        ),
        worker_count=workers,
    )
    return report.model_copy(update={"distance": distance(report)})
