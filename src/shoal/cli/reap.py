"""``python -m shoal.cli.reap``: the detached reaper a run starts at its end.

It reads its order (:class:`shoal.pg.reap.ReapOrder`) from the environment, waits for the
run's process to exit (bounded: the run's own exit should not share the CPU with its
reaper's drops), then drops the run's to-drop schemas and prints what it did to its log.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

# The run's process is waited for at most this long; a run that pytest.main'd from a
# longer-lived process (an IDE, a script) gets its schemas dropped all the same.
WAIT_FOR_RUN_S = 10.0


def _wait_for(pid: int | None) -> None:
    if pid is None:
        return
    import psutil

    with contextlib.suppress(psutil.Error):
        psutil.Process(pid).wait(timeout=WAIT_FOR_RUN_S)


def main() -> int:
    from shoal import naming
    from shoal.pg.reap import ReapOrder, reap

    with contextlib.suppress(OSError):
        os.nice(10)  # below the runs still going on this machine
    text = os.environ.get(naming.ENV_REAP)
    if not text:
        print(f"shoal reap: {naming.ENV_REAP} is not set; nothing to do", file=sys.stderr)
        return 2
    order = ReapOrder.from_json(text)
    _wait_for(order.after)
    result = reap(order)
    print(json.dumps({"reap": order.namespace, **result.as_json()}), flush=True)
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
