"""shoal.pg.slots.slots_for_capacity: how many schema DDL transactions may run at once."""

from __future__ import annotations

import pytest

from shoal.pg.slots import slot_count, slots_for_capacity


@pytest.mark.parametrize(
    ("max_locks_per_transaction", "max_connections", "slots"),
    [
        (64, 100, 1),  # PostgreSQL's defaults
        (64, 300, 2),  # the measured safe value
        (128, 100, 1),
        (64, 500, 4),
        (256, 500, 8),
        (10_000, 10_000, 8),
    ],
)
def test_slots_for_capacity(
    max_locks_per_transaction: int, max_connections: int, slots: int
) -> None:
    assert slots_for_capacity(max_locks_per_transaction, max_connections) == slots


@pytest.mark.parametrize(("locks", "connections"), [(0, 0), (1, 1), (10, 10), (64, 1), (-1, 100)])
def test_never_below_one_slot(locks: int, connections: int) -> None:
    assert slots_for_capacity(locks, connections) == 1


def test_more_capacity_never_means_fewer_slots() -> None:
    counts = [slots_for_capacity(64, connections) for connections in range(1, 2000, 7)]

    assert counts == sorted(counts)
    assert counts[0] == 1
    assert counts[-1] == 8


def test_a_small_setup_gets_more_slots_than_a_large_one_on_a_stock_server() -> None:
    stock = 64 * 100  # PostgreSQL 15's defaults: 64 locks per transaction, 100 connections
    assert slot_count("auto", stock) == 1  # unknown footprint: the 220-table figure
    assert slot_count("auto", stock, 4000) == 1
    assert slot_count("auto", stock, 60) == 8  # a 3-table schema (capped at 8)
    assert slot_count("auto", stock, 400) == 8
    assert slot_count("auto", stock, 1000) == 3
    assert slot_count(2, stock, 60) == 2  # a configured count wins
