from django.db import models


class Product(models.Model):
    sku = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    price_cents = models.IntegerField()


class StockMove(models.Model):
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="moves")
    quantity = models.IntegerField()
