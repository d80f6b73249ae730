"""The last price known per user and contract root: what paper orders fill at and positions are valued at."""

from django.conf import settings
from django.db import models

from trading.models.choices import PRICE_DIGITS


class LastPrice(models.Model):
    """The last price known for a contract root, per user: from their signals and POST /api/prices/."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="last_prices")
    symbol = models.CharField(max_length=16, help_text="Contract root.")
    price = models.DecimalField(**PRICE_DIGITS)
    source = models.CharField(max_length=32, blank=True, help_text="signal:<id> or api.")
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["owner", "symbol"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "symbol"], name="trading_lastprice_one_per_symbol"),
            models.CheckConstraint(condition=models.Q(price__gt=0), name="trading_lastprice_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.symbol} {self.price.normalize()}"
