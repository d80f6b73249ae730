"""A recorder's virtual book: the position its signals would hold, the average price and realized P&L."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal

from trading.risk.engine import Verdict
from trading.risk.values import CENT, whole
from trading.symbols import ContractInfo, to_decimal

AVERAGE_PRICE_PLACES = Decimal("1e-8")


@dataclass(frozen=True)
class RecorderBook:
    """A recorder's virtual position: signed contracts, average price and cumulative realized P&L."""

    position: int = 0
    avg_price: Decimal | None = None  # None when flat
    realized_pnl: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "position", whole(self.position, name="position", minimum=-(10**9)))
        object.__setattr__(self, "realized_pnl", to_decimal(self.realized_pnl, name="realized P&L"))
        if self.position == 0:
            object.__setattr__(self, "avg_price", None)
        elif self.avg_price is None:
            raise ValueError("A recorder book with an open position needs its average price.")
        else:
            object.__setattr__(self, "avg_price", to_decimal(self.avg_price, name="average price"))

    def fill(self, quantity: int, price: Decimal, contract: ContractInfo) -> tuple[RecorderBook, Decimal]:
        """Apply a signed fill (+ bought, - sold) at `price`; return the new book and dollars realized."""
        quantity = whole(quantity, name="fill quantity", minimum=-(10**9))
        price = to_decimal(price, name="fill price")
        if quantity == 0:
            return self, Decimal("0.00")
        position, average = self.position, self.avg_price
        if position == 0 or (position > 0) == (quantity > 0):
            new_position = position + quantity
            cost = (average or Decimal(0)) * abs(position) + price * abs(quantity)
            new_average = (cost / abs(new_position)).quantize(AVERAGE_PRICE_PLACES, rounding=ROUND_HALF_UP)
            return replace(self, position=new_position, avg_price=new_average), Decimal("0.00")
        assert average is not None  # noqa: S101 - __post_init__ guarantees it for an open position
        closed = min(abs(quantity), abs(position))
        direction = 1 if position > 0 else -1
        realized = ((price - average) * closed * direction * contract.point_value).quantize(
            CENT, rounding=ROUND_HALF_UP
        )
        new_position = position + quantity
        if new_position == 0:
            new_average = None
        elif (new_position > 0) == (position > 0):
            new_average = average
        else:
            new_average = price  # the fill flipped the position: the remainder opened at this price
        book = RecorderBook(new_position, new_average, (self.realized_pnl + realized).quantize(CENT))
        return book, realized

    def apply(self, verdict: Verdict, price: Decimal, contract: ContractInfo) -> tuple[RecorderBook, Decimal]:
        """Fill an allowed verdict at `price` (the signal's); return the new book and dollars realized."""
        if not verdict.allowed:
            return self, Decimal("0.00")
        return self.fill(verdict.position_after - verdict.position_before, price, contract)

    def unrealized_pnl(self, price: Decimal, contract: ContractInfo) -> Decimal:
        """Return the open position's P&L in dollars at `price`."""
        if self.position == 0 or self.avg_price is None:
            return Decimal("0.00")
        change = to_decimal(price, name="price") - self.avg_price
        return (change * self.position * contract.point_value).quantize(CENT, rounding=ROUND_HALF_UP)
