"""``python -m shoal.cli.warm``: ``shoal pool warm`` for the background refill.

A module of its own so that it works whether or not the ``pool`` group is registered on
the ``shoal`` command, and so that runpy does not execute ``shoal.cli.pool`` a second
time (the ``shoal.cli`` package imports it already).
"""

from __future__ import annotations

from shoal.cli.pool import main

if __name__ == "__main__":
    main()
