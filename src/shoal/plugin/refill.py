"""After a run, in detached processes the user never waits for: the reaper that drops the
schemas its workers renamed for dropping, and the refill of the warm pool. Both are
started by :func:`spawn`, the one way shoal starts a process that outlives the run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from shoal import naming
from shoal.plugin.state import STATE, RunState

# Logs of earlier refills kept next to the newest one; older ones are deleted.
KEEP_LOGS = 20
# How a detached process starts: at a lower CPU priority, then it waits for a free core
# (shoal.idle), then it runs its module (argv after the code: "-m", module, args). It
# starts as the run ends, while this run's workers and often other runs on the machine
# are still exiting: its imports and its work would compete with them for the cores.
NICENESS = 10
_BACKGROUND = (
    "import os, runpy, sys; os.nice({niceness}); "
    "from shoal.idle import wait_for_idle_core; wait_for_idle_core(); del sys.argv[:2]; "
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)"
)


def after_run(config: pytest.Config) -> list[int]:
    """Start what runs after the run (the reaper, then the refill); their pids."""
    started = [maybe_reap(config), maybe_refill(config)]
    return [pid for pid in started if pid is not None]


def maybe_reap(config: pytest.Config) -> int | None:
    """Start the reaper detached, when this run's workers renamed schemas for dropping;
    its pid. Only the process that saw the whole run starts one, once."""
    state: RunState | None = config.stash.get(STATE, None)
    if state is None or hasattr(config, "workerinput") or not state.to_drop:
        return None
    from shoal.pg.reap import ReapOrder, ReapTarget

    targets = tuple(dict.fromkeys(ReapTarget(**found) for found in state.to_drop))
    order = ReapOrder(
        namespace=state.plan.namespace,
        targets=targets,
        ddl_slots=state.plan.ddl_slots,
        timeout=state.plan.connect_timeout,
        after=os.getpid(),
    )
    return spawn(state, ["-m", "shoal.cli.reap"], {naming.ENV_REAP: order.to_json()})


def maybe_refill(config: pytest.Config) -> int | None:
    """Start ``shoal pool warm --quiet`` detached, when this run could use a pool; its pid.

    Only the process that saw the whole run (never an xdist worker), only when the
    project configures shoal, pooling is on, and some database's setup has a
    fingerprint. The refill is bounded (:func:`refill_size` builds per database at most)
    and safe when several run at once (one refill per pool). It runs its own plan,
    and builds every schema through the same setup path as a worker.

    """
    state: RunState | None = config.stash.get(STATE, None)
    if (
        state is None
        or hasattr(config, "workerinput")
        or not state.configured
        or state.plan.pool_size < 1
        or not any(t.fingerprint for t in state.plan.targets)
        # The same setup would fail the same way in the refill, unseen.
        or state.every_build_failed
    ):
        return None
    argv = ["-m", "shoal.cli.warm", "--project", str(config.rootpath), "warm", "--quiet"]
    return spawn(state, [*argv, "--size", str(refill_size(state))], {})


def spawn(state: RunState, argv: list[str], env: dict[str, str]) -> int | None:
    """``python -m module args…`` (``argv``) detached and at a lower CPU priority
    (:data:`NICENESS`), logging to the run's refill log, with this process's import path
    and ``env`` added to its environment; its pid, None when it cannot start.

    Started with posix_spawn, not subprocess: a Popen object that is never waited for
    warns (ResourceWarning) when collected, and a suite with ``filterwarnings = error``
    would turn that into a failed run.
    """
    logs = home_of(state) / "logs"
    try:
        logs.mkdir(parents=True, exist_ok=True)
        _prune(logs)
        log = logs / naming.pool_log_filename(state.plan.namespace)
        full = dict(os.environ, **env)
        # The setup hooks import as they did in this process (pytest's `pythonpath`, rootdir).
        full["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        full[naming.ENV_REFILL_LOG] = str(log)
        assert argv[0] == "-m", argv
        boot = _BACKGROUND.format(niceness=NICENESS)
        return os.posix_spawn(
            sys.executable,
            [sys.executable, "-c", boot, *argv],
            full,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True,  # survives the terminal's Ctrl-C and this process
        )
    except OSError:
        return None


def home_of(state: RunState) -> Path:
    """The home of the run's embedded server, logs and refill records."""
    from shoal.embedded import default_home

    return Path(state.plan.home) if state.plan.home else default_home()


def refill_size(state: RunState, pool_size: int | None = None) -> int:
    """Ready schemas to keep per database after this run: ``pool_size``, or more.

    More when this run had more workers that provisioned: the next run of the same
    command wants one ready schema per worker, and every worker beyond the pool would
    build in place, seconds instead of milliseconds.
    """
    from shoal.config import POOL_SIZE_MAX

    workers = len(state.timings_by_worker())
    size = state.plan.pool_size if pool_size is None else pool_size
    return min(max(size, workers), POOL_SIZE_MAX)


def _prune(logs: Path) -> None:
    found = sorted(
        (p for p in logs.glob(naming.pool_log_glob()) if naming.parse_pool_log_filename(p.name)),
        key=lambda p: p.stat().st_mtime,
    )
    for old in found[: max(0, len(found) - KEEP_LOGS + 1)]:
        old.unlink(missing_ok=True)
