"""shoal.namespace: forced, inherited from an ancestor `shoal run`, or fresh."""

from __future__ import annotations

import os

import psutil
import pytest

from shoal import naming
from shoal.namespace import Namespace, fresh, is_ancestor, resolve

EXPORTED = "p999t1700000000r0123abcd"
RUNNER = naming.runner_token(4242, 1700000000.5)


class Ancestry:
    """A stand-in for is_ancestor that answers ``answer`` and records what it was asked."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.calls: list[tuple[int, float]] = []

    def __call__(self, pid: int, started: float) -> bool:
        self.calls.append((pid, started))
        return self.answer


def assert_fresh(namespace: Namespace) -> None:
    assert namespace.origin == "fresh"
    assert naming.is_auto_namespace(namespace.token)
    assert namespace.token.startswith(f"p{os.getpid()}t")
    assert namespace.token != EXPORTED


def test_forced_wins_over_everything() -> None:
    ancestry = Ancestry(True)
    environ = {naming.ENV_NAMESPACE: EXPORTED, naming.ENV_RUNNER: RUNNER}

    namespace = resolve(environ, "mydebug", ancestor=ancestry)

    assert namespace == Namespace("mydebug", "forced")
    assert ancestry.calls == []
    assert "SHOAL_NAMESPACE_FORCE" in namespace.describe()


def test_export_from_an_ancestor_runner_is_kept() -> None:
    ancestry = Ancestry(True)
    environ = {naming.ENV_NAMESPACE: EXPORTED, naming.ENV_RUNNER: RUNNER}

    namespace = resolve(environ, None, ancestor=ancestry)

    assert namespace == Namespace(EXPORTED, "runner")
    assert ancestry.calls == [(4242, 1700000000.5)]


def test_forced_style_export_from_an_ancestor_runner_is_kept() -> None:
    environ = {naming.ENV_NAMESPACE: "mydebug", naming.ENV_RUNNER: RUNNER}

    assert resolve(environ, None, ancestor=Ancestry(True)) == Namespace("mydebug", "runner")


def test_export_from_a_runner_that_is_not_an_ancestor_is_replaced() -> None:
    # A shell that still exports the namespace of an earlier `shoal run`.
    ancestry = Ancestry(False)
    environ = {naming.ENV_NAMESPACE: EXPORTED, naming.ENV_RUNNER: RUNNER}

    namespace = resolve(environ, None, ancestor=ancestry)

    assert_fresh(namespace)
    assert ancestry.calls == [(4242, 1700000000.5)]


@pytest.mark.parametrize("runner", [None, "", "4242", "garbled", "x:1.0", "4242:soon"])
def test_export_without_a_usable_runner_token_is_replaced(runner: str | None) -> None:
    ancestry = Ancestry(True)
    environ = {naming.ENV_NAMESPACE: EXPORTED}
    if runner is not None:
        environ[naming.ENV_RUNNER] = runner

    namespace = resolve(environ, None, ancestor=ancestry)

    assert_fresh(namespace)
    assert ancestry.calls == []


@pytest.mark.parametrize("exported", ["", "my_debug", "Bad", "a" * 33, "x; DROP SCHEMA public"])
def test_exported_namespace_that_is_not_a_token_is_ignored(exported: str) -> None:
    environ = {naming.ENV_NAMESPACE: exported, naming.ENV_RUNNER: RUNNER}

    namespace = resolve(environ, None, ancestor=Ancestry(True))

    assert namespace.origin == "fresh"
    assert naming.is_auto_namespace(namespace.token)
    assert namespace.token != exported


def test_nothing_exported_gives_a_fresh_namespace() -> None:
    assert_fresh(resolve({}, None, ancestor=Ancestry(True)))


def test_fresh_namespaces_differ() -> None:
    tokens = {fresh().token for _ in range(20)}

    assert len(tokens) == 20
    assert all(naming.is_auto_namespace(token) for token in tokens)


# -- is_ancestor, against the real process tree -------------------------------------------


def test_parent_process_is_an_ancestor() -> None:
    parent = psutil.Process().parent()
    assert parent is not None

    assert is_ancestor(parent.pid, parent.create_time())
    # The runner token keeps two decimals; that must still be recognised.
    parsed = naming.parse_runner_token(naming.runner_token(parent.pid, parent.create_time()))
    assert parsed is not None
    assert is_ancestor(*parsed)


def test_own_process_counts_because_shoal_run_runs_pytest_in_process() -> None:
    me = psutil.Process()

    assert is_ancestor(me.pid, me.create_time())
    assert not is_ancestor(me.pid, me.create_time() - 3600)


@pytest.mark.parametrize("offset", [-3600.0, -5.0, 5.0])
def test_parent_with_another_start_time_is_not_an_ancestor(offset: float) -> None:
    # The same PID with another start time is a recycled PID: another process.
    parent = psutil.Process().parent()
    assert parent is not None

    assert not is_ancestor(parent.pid, parent.create_time() + offset)
