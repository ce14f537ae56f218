"""The default of each setting a run plan carries.

One place for both readers: the settings' models (:mod:`shoal.config`) and the plan of a
run that configures nothing (:meth:`shoal.plan.RunPlan.unconfigured`), which is built
without loading those models.
"""

from __future__ import annotations

from typing import Final, Literal

DDL_SLOTS: Final[Literal["auto"]] = "auto"
CONNECT_TIMEOUT_S: Final = 5
POOL_SIZE: Final = 2
REPORTS_DIR: Final = ".shoal/reports"  # relative to the project root
