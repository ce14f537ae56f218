"""Catalog tests that commit (transactional) and read back exactly what they wrote.

Another run writing into the same tables at the same moment shows up here as a wrong
count, a duplicate SKU, or rows flushed away between a write and the read.
"""

import time

import pytest
from catalog.models import Product, StockMove
from django.db import connection


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("n", range(12))
def test_stock_adds_up(n: int) -> None:
    product = Product.objects.create(sku=f"SKU-{n}", name=f"product {n}", price_cents=100 + n)
    for quantity in (5, -2, n):
        StockMove.objects.create(product=product, quantity=quantity)
    time.sleep(0.05)  # long enough for a neighbour's flush to land in between
    assert Product.objects.count() == 1
    assert sum(m.quantity for m in StockMove.objects.all()) == 3 + n


@pytest.mark.django_db
@pytest.mark.parametrize("n", range(8))
def test_prices_roll_back(n: int) -> None:
    Product.objects.bulk_create(
        Product(sku=f"B-{n}-{i}", name="bulk", price_cents=i) for i in range(n + 1)
    )
    assert Product.objects.filter(name="bulk").count() == n + 1


@pytest.mark.django_db
def test_tables_are_found_on_the_search_path() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('catalog_product') IS NOT NULL")
        assert cursor.fetchone() == (True,)
