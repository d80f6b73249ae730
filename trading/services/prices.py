"""Last known prices per user and contract; a new price fills the paper orders it crosses."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.utils import timezone

from trading.brokers.paper import paper_price_update
from trading.models import (
    BrokerAccount,
    LastPrice,
)
from trading.services.contracts import contract_root
from trading.services.sync import account_sync
from trading.symbols import SymbolError, to_decimal

MAX_PRICE = Decimal(10) ** 10


@dataclass(frozen=True)
class PriceUpdate:
    """A price stored for a user, and the paper accounts whose resting orders it filled."""

    symbol: str
    price: Decimal
    filled_accounts: list[int]


def price_record(*, owner, symbol: str, price: Decimal | int | str, source: str = "api") -> PriceUpdate:
    """Store the last price of a contract for a user and fill their paper orders it crosses.

    Raises ValueError with a sentence for an unknown symbol or a price that is not a positive number.
    """
    try:
        root = contract_root(symbol)
    except SymbolError as error:
        raise ValueError(str(error)) from None
    value = to_decimal(price, name="price")
    if value <= 0 or value >= MAX_PRICE:
        raise ValueError(f"The price must be more than 0 and less than {MAX_PRICE:f}, not {value}.")
    if value.as_tuple().exponent < -8:  # type: ignore[operator]
        value = value.quantize(Decimal("1e-8"))
    owner_id = getattr(owner, "pk", owner)
    LastPrice.objects.update_or_create(
        owner_id=owner_id,
        symbol=root,
        defaults={"price": value, "source": source[:32], "updated_at": timezone.now()},
    )
    touched = paper_price_update(owner_id=owner_id, symbol=root, price=value)
    for account in BrokerAccount.objects.filter(pk__in=touched):
        account_sync(account=account)
    return PriceUpdate(symbol=root, price=value, filled_accounts=touched)


def last_price(*, owner_id: int, symbol: str) -> Decimal | None:
    """Return the user's last known price of a contract root, or None."""
    return LastPrice.objects.filter(owner_id=owner_id, symbol=symbol).values_list("price", flat=True).first()
