"""Moved to :mod:`shoal.conninfo`; kept until every caller imports it from there."""

from shoal.conninfo import *  # noqa: F403
from shoal.conninfo import mask

__all__ = ["mask"]
