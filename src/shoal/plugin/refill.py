"""Refill the warm pool after a run, in a detached process the user never waits for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shoal import naming
from shoal.config import POOL_SIZE_MAX
from shoal.embedded import default_home
from shoal.pg.fingerprint import ATTRIBUTE
from shoal.plugin.state import STATE, RunState

# Logs of earlier refills kept next to the newest one; older ones are deleted.
KEEP_LOGS = 20


def maybe_refill(config: pytest.Config) -> subprocess.Popen[bytes] | None:
    """Start ``shoal pool warm --quiet`` detached, when this run could use a pool.

    Run as ``python -m shoal.cli.warm`` so it works whether or not the ``pool`` group is
    registered on the ``shoal`` command.
    Only the process that saw the whole run (never an xdist worker), only when the
    project configures shoal, pooling is on, the databases were resolved, and some
    setup can have a fingerprint. The refill is bounded (:func:`refill_size` builds per
    database at most) and safe when several run at once (one refill per pool).
    """
    state: RunState | None = config.stash.get(STATE, None)
    if (
        state is None
        or hasattr(config, "workerinput")
        or not state.configured
        or state.settings.pool_size < 1
        or state.resolved_targets is None
        or not any(_may_have_fingerprint(t.setup) for t in state.resolved_targets)
    ):
        return None
    logs = (state.settings.home or default_home()) / "logs"
    try:
        logs.mkdir(parents=True, exist_ok=True)
        _prune(logs)
        log = (logs / naming.pool_log_filename(state.namespace.token)).open("ab")
    except OSError:
        return None
    env = dict(os.environ)
    # The setup hooks import as they did in this process (pytest's `pythonpath`, rootdir).
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    argv = [sys.executable, "-m", "shoal.cli.warm", "warm", "--quiet"]
    with log:
        return subprocess.Popen(
            [*argv, "--size", str(refill_size(state))],
            cwd=str(config.rootpath),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the terminal's Ctrl-C and this process
        )


def refill_size(state: RunState) -> int:
    """Ready schemas to keep per database after this run: ``pool_size``, or more.

    More when this run had more workers that provisioned: the next run of the same
    command wants one ready schema per worker, and every worker beyond the pool would
    build in place, seconds instead of milliseconds.
    """
    workers = len(state.timings_by_worker())
    return min(max(state.settings.pool_size, workers), POOL_SIZE_MAX)


def _may_have_fingerprint(setup: object) -> bool:
    kind = getattr(setup, "kind", None)
    if kind in ("metadata", "alembic", "sql"):
        return True
    return kind == "callable" and hasattr(getattr(setup, "target", None), ATTRIBUTE)


def _prune(logs: Path) -> None:
    found = sorted(
        (p for p in logs.glob(naming.pool_log_glob()) if naming.parse_pool_log_filename(p.name)),
        key=lambda p: p.stat().st_mtime,
    )
    for old in found[: max(0, len(found) - KEEP_LOGS + 1)]:
        old.unlink(missing_ok=True)
