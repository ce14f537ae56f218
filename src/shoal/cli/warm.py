"""``python -m shoal.cli.warm [--project DIR] warm …``: ``shoal pool warm`` for the refill.

A module of its own so that it works whether or not the ``pool`` group is registered on
the ``shoal`` command, and so that runpy does not execute ``shoal.cli.pool`` a second
time (the ``shoal.cli`` package imports it already). ``DIR`` is the project root the
run had: the refill finds its settings there (posix_spawn cannot set a working directory).
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    if sys.argv[1:2] == ["--project"]:
        os.chdir(sys.argv[2])
        del sys.argv[1:3]
    from shoal.cli.pool import main

    main()
