"""Template filters for money and signed positions on the trading pages."""

from decimal import Decimal, InvalidOperation

from django import template

register = template.Library()


@register.filter
def money(value) -> str:
    """Return dollars as `$1,234.50` or `-$50.00` (empty for no value)."""
    if value is None or value == "":
        return ""
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        return ""
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,.2f}"


@register.filter
def signed(value) -> str:
    """Return a position as `+2`, `-1` or `0`."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return ""
    return f"{number:+d}" if number else "0"


@register.filter
def pnl_class(value) -> str:
    """Return the CSS class that colours a profit or a loss."""
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return ""
    if amount > 0:
        return "pnl-positive"
    return "pnl-negative" if amount < 0 else ""
