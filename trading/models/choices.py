"""Choices and field sizes shared by the model modules; choice values are what risk and plans parse."""

from django.db import models

# Prices and money as every price and P&L column stores them.
PRICE_DIGITS = {"max_digits": 18, "decimal_places": 8}
MONEY_DIGITS = {"max_digits": 16, "decimal_places": 2}


class DistanceUnit(models.TextChoices):
    """Units of a take-profit or average-down distance."""

    TICKS = "ticks", "Ticks"
    POINTS = "points", "Points"
    PERCENT = "percent", "Percent"


class StopUnit(models.TextChoices):
    """Units of a stop loss: a distance, or the most dollars the position may lose."""

    TICKS = "ticks", "Ticks"
    POINTS = "points", "Points"
    PERCENT = "percent", "Percent"
    DOLLARS = "dollars", "Dollar loss"


class StopType(models.TextChoices):
    """A stop loss that stays put or trails the price."""

    FIXED = "fixed", "Fixed"
    TRAILING = "trailing", "Trailing"


class DirectionFilter(models.TextChoices):
    """Which positions signals may open."""

    BOTH = "both", "Long and short"
    LONG = "long", "Long only"
    SHORT = "short", "Short only"


def values_of(choices: type[models.TextChoices]) -> list[str]:
    """Return the stored values of a choices class, for CheckConstraints."""
    return [value for value, _label in choices.choices]
