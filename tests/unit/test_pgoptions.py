"""shoal.binding.pgoptions: the worker's search path replaces the user's, nothing else."""

from __future__ import annotations

import pytest

from shoal.binding import pgoptions

SCHEMA = ("test_p1t2r0123abcd_gw0",)


def split_options(value: str) -> list[str]:
    """PGOPTIONS as the server splits it: on whitespace, a backslash escapes the next character."""
    words: list[str] = []
    current: list[str] = []
    escaped = False
    for char in value:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char.isspace():
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        words.append("".join(current))
    return words


def settings_in(value: str) -> list[tuple[str, str]]:
    """The (name, value) settings PGOPTIONS makes, in order; fails on anything stray."""
    words = iter(split_options(value))
    found: list[tuple[str, str]] = []
    for word in words:
        if word == "-c":
            setting = next(words)
        elif word.startswith(("-c", "--")):
            setting = word[2:]
        else:
            raise AssertionError(f"stray word {word!r} in PGOPTIONS {value!r}")
        name, equals, setting_value = setting.partition("=")
        assert equals, f"{setting!r} in PGOPTIONS {value!r} has no value"
        found.append((name.replace("-", "_"), setting_value))
    return found


@pytest.mark.parametrize("existing", [None, "", "   "])
def test_no_user_options(existing: str | None) -> None:
    assert settings_in(pgoptions(existing, SCHEMA)) == [("search_path", SCHEMA[0])]


@pytest.mark.parametrize(
    "existing",
    [
        "-c search_path=public",
        "-csearch_path=public",
        "--search_path=public",
        "-c search_path=app,public",
        "-c search_path=a -c search_path=b",
        '-c search_path="$user",public',
    ],
)
def test_user_search_path_is_replaced(existing: str) -> None:
    assert settings_in(pgoptions(existing, SCHEMA)) == [("search_path", SCHEMA[0])]


@pytest.mark.parametrize(
    ("existing", "kept"),
    [
        ("-c statement_timeout=5s", [("statement_timeout", "5s")]),
        ("-c search_path=public -c statement_timeout=5s", [("statement_timeout", "5s")]),
        ("-c statement_timeout=5s --search_path=public", [("statement_timeout", "5s")]),
        (
            "--lock_timeout=1s -c search_path=public -c statement_timeout=5s",
            [("lock_timeout", "1s"), ("statement_timeout", "5s")],
        ),
        ("-c application_name=x\\ y", [("application_name", "x y")]),
        ("-c my.search_path_like=1", [("my.search_path_like", "1")]),
    ],
)
def test_other_options_are_kept(existing: str, kept: list[tuple[str, str]]) -> None:
    result = settings_in(pgoptions(existing, SCHEMA))

    assert result == [*kept, ("search_path", SCHEMA[0])]


def test_search_path_with_a_tail() -> None:
    result = pgoptions("-c statement_timeout=5s", ("test_x_gw1", "public"))

    assert settings_in(result) == [
        ("statement_timeout", "5s"),
        ("search_path", "test_x_gw1,public"),
    ]


def test_user_search_path_with_an_escaped_space_is_replaced_whole() -> None:
    result = pgoptions("-c search_path=app,\\ public -c statement_timeout=5s", SCHEMA)

    assert settings_in(result) == [("statement_timeout", "5s"), ("search_path", SCHEMA[0])]
