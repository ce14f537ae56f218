"""shoal's errors. Each one says what went wrong and what to do about it.

Each class carries the exit code the CLI ends with (click's pattern): 2 for the user's
input, 1 for the world (a server, a setup). The CLI prints ``Error: ...`` and the plugin a
pytest usage error; neither shows a traceback for any of them.
"""

from __future__ import annotations

from typing import ClassVar

from shoal.conninfo import mask


class ShoalError(Exception):
    """Base of every error shoal raises on purpose."""

    exit_code: ClassVar[int] = 1


def first_line(exc: BaseException) -> str:
    """The first non-empty line of ``exc``'s message, passwords masked; the exception's
    type name when the message is empty (psycopg raises some with none)."""
    for line in str(exc).splitlines():
        if line.strip():
            return mask(line.strip())
    return type(exc).__name__


class UsageError(ShoalError):
    """Bad input from the user: a config value, a flag, an environment variable.

    The message names the key, the value, where it came from, and what was expected.
    """

    exit_code = 2

    def __init__(self, key: str, value: object, source: str, expected: str) -> None:
        self.key = key
        self.value = value
        self.source = source
        self.expected = expected
        super().__init__(f"{key} = {_shown(value)} (from {source}): {expected}")


def _shown(value: object, limit: int = 200) -> str:
    """``repr(value)``, cut short when it is too long to read in a message."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 40]}… ({len(str(value))} characters)"


class ConfigError(ShoalError):
    """Several settings problems reported together; each line is one UsageError."""

    exit_code = 2

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


class ExtensionUnavailable(ShoalError):
    """A configured extension cannot be created in its database."""

    def __init__(self, database: str, extension: str, reason: str) -> None:
        self.database, self.extension, self.reason = database, extension, reason
        super().__init__(f"database {database!r}: extension {extension!r}: {reason}")


class NamespaceTaken(ShoalError):
    """A forced namespace is held by a run that is still alive."""

    exit_code = 2
