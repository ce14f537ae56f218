from django.db import models


class Entry(models.Model):
    account = models.CharField(max_length=64)
    amount_cents = models.IntegerField()
    memo = models.CharField(max_length=200, blank=True)
