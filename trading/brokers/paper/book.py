"""One book of the paper exchange (a sub-account in one contract): its lock, and matching a price on it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import F, Q, Value

from trading.brokers.base import (
    OrderRejected,
)
from trading.models import (
    PaperFill,
    PaperOrder,
    PaperPosition,
)
from trading.risk import RecorderBook, session_key
from trading.selectors import contract_specs
from trading.symbols import CONTRACTS, ContractInfo

OPEN_STATUSES = (PaperOrder.Status.PENDING, PaperOrder.Status.WORKING)


def paper_contracts() -> dict[str, ContractInfo]:
    return contract_specs() or dict(CONTRACTS)


@dataclass(frozen=True)
class PaperBook:
    """The key of one order book: a paper account's sub-account and one contract root."""

    broker_account_id: int
    account_id: str
    root: str


def position_lock(book: PaperBook) -> PaperPosition:
    """Return the book's position row, locked for the rest of the transaction (created flat if new)."""
    PaperPosition.objects.get_or_create(
        broker_account_id=book.broker_account_id, account_id=book.account_id, root=book.root
    )
    return PaperPosition.objects.select_for_update().get(
        broker_account_id=book.broker_account_id, account_id=book.account_id, root=book.root
    )


class PaperMatcher:
    """Fills orders of one locked book against a price; OCO siblings are cancelled, bracket legs activated."""

    def __init__(
        self,
        book: PaperBook,
        position: PaperPosition,
        *,
        contract: ContractInfo | None,
        clock: Callable[[], datetime],
        last_price: Callable[[], Decimal | None],
    ) -> None:
        self.book = book
        self.position = position
        self.contract = contract or CONTRACTS.get(book.root)
        self.clock = clock
        self.last_price = last_price

    def run(
        self, orders: Iterable[PaperOrder], price: Decimal | None = None, *, arriving: bool = True
    ) -> int:
        """Fill every order the price crosses (default: the last known price); return how many filled.

        `arriving` orders were just placed (or changed): a marketable limit fills at the price, not its limit.
        """
        if price is None:
            price = self.last_price()
        if price is None:
            return 0
        queue = [(row, arriving) for row in orders]
        filled = 0
        done: set[int] = set()
        while queue:
            row, new = queue.pop(0)
            if row.pk in done or row.status != PaperOrder.Status.WORKING:
                continue
            done.add(row.pk)
            fill_price = crossing_price(row, price, arriving=new)
            if fill_price is None:
                trail_move(row, price)
                continue
            cancelled, activated = self.fill(row, fill_price)
            filled += 1
            done.update(cancelled)
            # Legs go on the book now, at this price: one already through it fills at once.
            queue.extend((leg, True) for leg in activated)
        return filled

    def fill(self, row: PaperOrder, price: Decimal) -> tuple[set[int], list[PaperOrder]]:
        """Fill one order at `price`; return the ids of OCO siblings cancelled and the legs put to work."""
        now = self.clock()
        updated = PaperOrder.objects.filter(pk=row.pk, status=PaperOrder.Status.WORKING).update(
            status=PaperOrder.Status.FILLED, fill_price=price, filled_at=now, updated_at=now
        )
        if not updated:
            return set(), []
        row.status, row.fill_price, row.filled_at = PaperOrder.Status.FILLED, price, now
        signed = row.quantity if row.action == "Buy" else -row.quantity
        position = self.position
        book = RecorderBook(position.quantity, position.avg_price, position.realized_pnl)
        if self.contract is None:
            raise OrderRejected(f"No contract specification for {self.book.root}.", reason="InvalidContract")
        book, realized = book.fill(signed, price, self.contract)
        position.quantity, position.avg_price, position.realized_pnl = (
            book.position,
            book.avg_price,
            book.realized_pnl,
        )
        position.save(update_fields=["quantity", "avg_price", "realized_pnl", "updated_at"])
        PaperFill.objects.create(
            broker_account_id=self.book.broker_account_id,
            account_id=self.book.account_id,
            order=row,
            root=self.book.root,
            action=row.action,
            quantity=row.quantity,
            price=price,
            realized_pnl=realized,
            session=session_key(now),
            filled_at=now,
        )
        cancelled: set[int] = set()
        if row.oco_group:
            siblings = PaperOrder.objects.filter(
                broker_account_id=self.book.broker_account_id,
                oco_group=row.oco_group,
                status__in=OPEN_STATUSES,
            ).exclude(pk=row.pk)
            cancelled = set(siblings.values_list("pk", flat=True))
            PaperOrder.objects.filter(pk__in=cancelled).update(
                status=PaperOrder.Status.CANCELLED, updated_at=now
            )
        legs = list(PaperOrder.objects.filter(parent_id=row.pk, status=PaperOrder.Status.PENDING))
        PaperOrder.objects.filter(pk__in=[leg.pk for leg in legs]).update(
            status=PaperOrder.Status.WORKING, updated_at=now
        )
        for leg in legs:
            leg.status = PaperOrder.Status.WORKING
        return cancelled, legs


def crossing_price(row: PaperOrder, price: Decimal, *, arriving: bool) -> Decimal | None:
    """Return the fill price if `price` executes the order, else None.

    A market order fills at the price. A limit that is marketable on arrival fills at the price (no worse than
    its limit); a resting limit that a later price trades through fills at its limit. A stop (or trailing
    stop) becomes a market order once the price touches it, and fills at that price.
    """
    buy = row.action == "Buy"
    if row.order_type == "Market":
        return price
    if row.order_type == "Limit":
        limit = row.price
        if not (price <= limit if buy else price >= limit):
            return None
        return price if arriving else limit
    stop = row.stop_price
    crossed = price >= stop if buy else price <= stop
    return price if crossed else None


def trail_move(row: PaperOrder, price: Decimal) -> None:
    """Move a trailing stop after a price that did not trigger it."""
    if row.order_type != "TrailingStop" or row.trail_distance is None:
        return
    if row.action == "Sell":
        candidate = price - row.trail_distance
        better = candidate > row.stop_price
    else:
        candidate = price + row.trail_distance
        better = candidate < row.stop_price
    if better:
        PaperOrder.objects.filter(pk=row.pk, status=PaperOrder.Status.WORKING).update(stop_price=candidate)
        row.stop_price = candidate


def reached_by(price: Decimal) -> Q:
    """Working orders a new price fills (as `crossing_price` decides) or whose trailing stop it moves."""
    buy, sell = Q(action="Buy"), Q(action="Sell")
    stops = Q(order_type__in=("Stop", "TrailingStop"))
    trailing = Q(order_type="TrailingStop", trail_distance__isnull=False)
    return (
        Q(order_type="Market")
        | Q(order_type="Limit") & (buy & Q(price__gte=price) | sell & Q(price__lte=price))
        | stops & (buy & Q(stop_price__lte=price) | sell & Q(stop_price__gte=price))
        | trailing & sell & Q(stop_price__lt=Value(price) - F("trail_distance"))
        | trailing & buy & Q(stop_price__gt=Value(price) + F("trail_distance"))
    )
