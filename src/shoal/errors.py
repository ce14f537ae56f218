"""shoal's errors. Each one says what went wrong and what to do about it.

The plugin turns a :class:`UsageError` into a pytest usage error and the CLI into
``Error: ...`` with exit code 2; neither shows a traceback for a user's mistake.
"""

from __future__ import annotations


class ShoalError(Exception):
    """Base of every error shoal raises on purpose."""


class UsageError(ShoalError):
    """Bad input from the user: a config value, a flag, an environment variable.

    The message names the key, the value, where it came from, and what was expected.
    """

    def __init__(self, key: str, value: object, source: str, expected: str) -> None:
        self.key = key
        self.value = value
        self.source = source
        self.expected = expected
        super().__init__(f"{key} = {value!r} (from {source}): {expected}")


class ConfigError(ShoalError):
    """Several settings problems reported together; each line is one UsageError."""

    def __init__(self, problems: list[UsageError]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ServerUnreachable(ShoalError):
    """A PostgreSQL server could not be reached within the connect timeout."""


class EmbeddedServerError(ShoalError):
    """The embedded PostgreSQL server could not be initialised or started."""


class UnsafeSearchPath(ShoalError):
    """A configured search-path tail holds tables, so tests could read or write it."""


class SchemaMissing(ShoalError):
    """A worker schema was expected to exist and does not: fail instead of using public."""


class SetupError(ShoalError):
    """A database's setup hook failed inside its worker schema."""
