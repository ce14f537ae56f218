"""Ledger tests: the `ledger` database, through the router, alone and beside `default`."""

import time

import pytest
from catalog.models import Product
from ledger.models import Entry


@pytest.mark.django_db(transaction=True, databases=["default", "ledger"])
@pytest.mark.parametrize("n", range(10))
def test_entries_balance(n: int) -> None:
    Entry.objects.create(account="cash", amount_cents=1000 + n)
    Entry.objects.create(account="sales", amount_cents=-(1000 + n))
    Product.objects.create(sku=f"L-{n}", name="sold", price_cents=1000 + n)
    time.sleep(0.05)
    assert Entry.objects.using("ledger").count() == 2
    assert sum(e.amount_cents for e in Entry.objects.all()) == 0
    assert Product.objects.count() == 1


@pytest.mark.django_db(databases=["ledger"])
@pytest.mark.parametrize("n", range(4))
def test_memo_round_trip(n: int) -> None:
    Entry.objects.create(account="memo", amount_cents=n, memo=f"note {n}")
    assert Entry.objects.get(account="memo").memo == f"note {n}"
