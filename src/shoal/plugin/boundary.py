"""The plugin's one error boundary: shoal's errors and the server's become usage errors.

pytest prints a usage error as one ``ERROR: …`` line and exits 4, with no traceback; a
password in the message is masked.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from shoal.errors import ShoalError, first_line


@contextmanager
def shoal_errors_as_usage_errors() -> Iterator[None]:
    try:
        yield
    except ShoalError as exc:
        raise pytest.UsageError(f"shoal: {exc}") from None
    except Exception as exc:
        # psycopg is imported only by processes that talk to a server; its errors are
        # recognised by their module rather than imported here for every worker.
        if not type(exc).__module__.startswith("psycopg"):
            raise
        raise pytest.UsageError(f"shoal: PostgreSQL said: {first_line(exc)}") from None
