"""The paper broker: a simulated exchange and account in our own database, behind the same Broker interface.

Market orders fill at the last price known for the contract (a signal's price or one posted to /api/prices/);
resting limit, stop and trailing-stop orders fill when a later price crosses them; bracket legs wait for their
entry and cancel each other (OCO). Positions, average price and realized P&L per CME session are kept.

Every change to one sub-account's book in one contract runs in a transaction holding that book's
PaperPosition row lock (on SQLite the immediate transaction's write lock), so a price tick and an order
arriving together never fill the same order twice or lose a fill.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum, Value
from django.utils import timezone

from trading.brokers.base import (
    AccountBalance,
    BracketLeg,
    BracketRequest,
    Broker,
    BrokerFill,
    BrokerOrder,
    BrokerPosition,
    OrderRejected,
    OrderRequest,
    OrderStatus,
    OrderType,
    PlacedBracket,
    PlacedOco,
    PlacedOrder,
    SubAccount,
    TimeInForce,
    check_oco_pair,
)
from trading.models import (
    BrokerAccount,
    BrokerSubAccount,
    LastPrice,
    PaperFill,
    PaperOrder,
    PaperPosition,
)
from trading.risk import RecorderBook, session_key
from trading.selectors import contract_specs
from trading.symbols import CONTRACTS, ContractInfo, SymbolError, symbol_root

PAPER_STARTING_CASH = Decimal("100000.00")
# How many of an account's latest orders and fills are reported, as a real broker reports only recent ones.
REPORTED_HISTORY = 500
_OPEN = (PaperOrder.Status.PENDING, PaperOrder.Status.WORKING)
_STATUSES = {
    PaperOrder.Status.PENDING: OrderStatus.PENDING,
    PaperOrder.Status.WORKING: OrderStatus.WORKING,
    PaperOrder.Status.FILLED: OrderStatus.FILLED,
    PaperOrder.Status.CANCELLED: OrderStatus.CANCELLED,
}


def paper_account_id(broker_account_id: int) -> str:
    """Return the id of the one trading account a paper broker account holds."""
    return f"paper-{broker_account_id}"


def _contracts() -> dict[str, ContractInfo]:
    return contract_specs() or dict(CONTRACTS)


def _opposite(action: str) -> str:
    return "Sell" if action == "Buy" else "Buy"


@dataclass(frozen=True)
class _Book:
    """The key of one order book: a paper account's sub-account and one contract root."""

    broker_account_id: int
    account_id: str
    root: str


class PaperBroker(Broker):
    """The Broker interface over the simulated book of one paper BrokerAccount."""

    def __init__(self, account: BrokerAccount, *, clock: Callable[[], datetime] = timezone.now) -> None:
        self.broker_account_id = account.pk
        self.owner_id = account.owner_id
        self.name = account.name
        self._clock = clock
        self._contract_table: dict[str, ContractInfo] | None = None
        self._account_ids: set[str] | None = None

    # Accounts and money.

    def list_accounts(self) -> list[SubAccount]:
        """The paper account's one trading account."""
        return [SubAccount(id=paper_account_id(self.broker_account_id), name="Paper", active=True)]

    def account_balance(self, account_id: str) -> AccountBalance:
        """Cash (starting cash plus everything realized), this session's realized P&L and open P&L."""
        self._check_account(account_id)
        fills = PaperFill.objects.filter(broker_account_id=self.broker_account_id, account_id=account_id)
        total = fills.aggregate(total=Sum("realized_pnl"))["total"] or Decimal(0)
        session = session_key(self._clock())
        today = fills.filter(session=session).aggregate(total=Sum("realized_pnl"))["total"] or Decimal(0)
        open_pnl = Decimal("0.00")
        positions = PaperPosition.objects.filter(
            broker_account_id=self.broker_account_id, account_id=account_id
        ).exclude(quantity=0)
        for position in positions:
            price = self._last_price(position.root)
            contract = self._contract_table_get(position.root)
            if price is not None and contract is not None:
                book = RecorderBook(position.quantity, position.avg_price, position.realized_pnl)
                open_pnl += book.unrealized_pnl(price, contract)
        cash = (PAPER_STARTING_CASH + total).quantize(Decimal("0.01"))
        return AccountBalance(
            account_id=account_id,
            cash_balance=cash,
            net_liquidation=cash + open_pnl,
            realized_pnl=today.quantize(Decimal("0.01")),
            open_pnl=open_pnl,
        )

    # Orders.

    def place_order(self, order: OrderRequest) -> PlacedOrder:
        """Put one order on the book; a market order (or a marketable one) fills at once at the last price."""
        book = self._book(order.account_id, order.symbol)
        with transaction.atomic():
            position = _lock(book)
            row = self._new_order(book, order, status=PaperOrder.Status.WORKING)
            if order.order_type == "Market" and self._last_price(book.root) is None:
                raise OrderRejected(_no_price(book.root), reason="NoQuote")
            _Matcher(self, book, position).run([row])
        return PlacedOrder(broker_order_id=str(row.pk))

    def place_bracket(self, bracket: BracketRequest) -> PlacedBracket:
        """Place an entry with its legs; the legs go on the book once it fills and cancel each other."""
        entry = bracket.entry
        book = self._book(entry.account_id, entry.symbol)
        with transaction.atomic():
            position = _lock(book)
            if entry.order_type == "Market" and self._last_price(book.root) is None:
                raise OrderRejected(_no_price(book.root), reason="NoQuote")
            parent = self._new_order(book, entry, status=PaperOrder.Status.WORKING)
            legs = [leg for leg in (bracket.take_profit, bracket.stop_loss) if leg is not None]
            oco = f"oco-{parent.pk}" if len(legs) == 2 else ""
            leg_rows = [
                self._new_leg(book, leg, entry, parent=parent, action=bracket.exit_action, oco=oco)
                for leg in legs
            ]
            _Matcher(self, book, position).run([parent])
        take_profit = leg_rows[0] if bracket.take_profit is not None else None
        stop_loss = leg_rows[-1] if bracket.stop_loss is not None else None
        return PlacedBracket(
            entry_id=str(parent.pk),
            take_profit_id=str(take_profit.pk) if take_profit else None,
            stop_loss_id=str(stop_loss.pk) if stop_loss else None,
        )

    def place_oco(self, order: OrderRequest, other: OrderRequest) -> PlacedOco:
        """Put two exits on the book as one-cancels-other, in one locked transaction.

        They share an OCO group, so the matcher cancels one in the same transaction that fills the other: a
        second price arriving before any sync can no longer fill both.
        """
        try:
            check_oco_pair(order, other)
        except ValueError as error:
            raise OrderRejected(str(error), reason="InvalidOco") from None
        book = self._book(order.account_id, order.symbol)
        with transaction.atomic():
            position = _lock(book)
            first = self._new_order(book, order, status=PaperOrder.Status.WORKING)
            second = self._new_order(book, other, status=PaperOrder.Status.WORKING)
            oco = f"oco-{first.pk}"
            PaperOrder.objects.filter(pk__in=(first.pk, second.pk)).update(oco_group=oco)
            first.oco_group = second.oco_group = oco
            _Matcher(self, book, position).run([first, second])
        return PlacedOco(order_id=str(first.pk), other_id=str(second.pk))

    def modify_order(
        self,
        broker_order_id: str,
        *,
        quantity: int,
        price: Decimal | None,
        stop_price: Decimal | None,
        order_type: OrderType,
        time_in_force: TimeInForce = "GTC",
    ) -> None:
        """Change a working order's quantity, type and prices; it fills at once if it became marketable."""
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
            raise OrderRejected(f"The quantity must be a positive whole number, not {quantity!r}.")
        row = self._order_row(broker_order_id)
        book = _Book(self.broker_account_id, row.account_id, row.root)
        with transaction.atomic():
            position = _lock(book)
            row = PaperOrder.objects.get(pk=row.pk)
            if row.status not in _OPEN:
                raise OrderRejected(
                    f"Order {broker_order_id} is {row.get_status_display().lower()}: it cannot be changed."
                )
            _check_prices(order_type, price, stop_price, row.trail_distance)
            row.quantity, row.order_type, row.price, row.stop_price = quantity, order_type, price, stop_price
            row.time_in_force = time_in_force
            row.save(
                update_fields=["quantity", "order_type", "price", "stop_price", "time_in_force", "updated_at"]
            )
            if row.status == PaperOrder.Status.WORKING:
                _Matcher(self, book, position).run([row])

    def cancel_order(self, broker_order_id: str) -> None:
        """Cancel a working order (and the legs waiting on it)."""
        row = self._order_row(broker_order_id)
        book = _Book(self.broker_account_id, row.account_id, row.root)
        with transaction.atomic():
            _lock(book)
            cancelled = PaperOrder.objects.filter(pk=row.pk, status__in=_OPEN).update(
                status=PaperOrder.Status.CANCELLED, updated_at=self._clock()
            )
            if not cancelled:
                state = PaperOrder.objects.get(pk=row.pk).get_status_display().lower()
                raise OrderRejected(f"Order {broker_order_id} is {state}: there is nothing to cancel.")
            PaperOrder.objects.filter(parent_id=row.pk, status__in=_OPEN).update(
                status=PaperOrder.Status.CANCELLED, updated_at=self._clock()
            )

    def liquidate_position(self, account_id: str, symbol: str) -> PlacedOrder | None:
        """Cancel the contract's open orders and close the position at the last price; None when flat."""
        book = self._book(account_id, symbol)
        with transaction.atomic():
            position = _lock(book)
            PaperOrder.objects.filter(
                broker_account_id=book.broker_account_id,
                account_id=account_id,
                root=book.root,
                status__in=_OPEN,
            ).update(status=PaperOrder.Status.CANCELLED, updated_at=self._clock())
            if position.quantity == 0:
                return None
            request = OrderRequest(
                client_id=f"liquidate-{uuid.uuid4().hex}",
                account_id=account_id,
                account_spec=self.name,
                symbol=symbol,
                action="Sell" if position.quantity > 0 else "Buy",
                order_type="Market",
                quantity=abs(position.quantity),
            )
            row = self._new_order(book, request, status=PaperOrder.Status.WORKING)
            # A position means a price was known when it opened; its average stands in if that price is gone.
            price = self._last_price(book.root) or position.avg_price
            _Matcher(self, book, position).fill(row, price)
        return PlacedOrder(broker_order_id=str(row.pk))

    # Reading.

    def list_positions(self, account_id: str) -> list[BrokerPosition]:
        """The account's non-flat positions."""
        self._check_account(account_id)
        rows = PaperPosition.objects.filter(broker_account_id=self.broker_account_id, account_id=account_id)
        return [
            BrokerPosition(
                account_id=account_id, symbol=row.root, quantity=row.quantity, avg_price=row.avg_price
            )
            for row in rows.exclude(quantity=0)
        ]

    def list_orders(self, account_id: str) -> list[BrokerOrder]:
        """The account's latest orders, newest first."""
        self._check_account(account_id)
        rows = PaperOrder.objects.filter(broker_account_id=self.broker_account_id, account_id=account_id)
        return [self._broker_order(row) for row in rows.order_by("-pk")[:REPORTED_HISTORY]]

    def list_fills(self, account_id: str) -> list[BrokerFill]:
        """The account's latest fills, newest first."""
        self._check_account(account_id)
        rows = PaperFill.objects.filter(broker_account_id=self.broker_account_id, account_id=account_id)
        return [
            BrokerFill(
                broker_fill_id=str(row.pk),
                broker_order_id=str(row.order_id),
                account_id=account_id,
                symbol=row.root,
                action=row.action,
                quantity=row.quantity,
                price=row.price,
                timestamp=row.filled_at,
            )
            for row in rows.order_by("-pk")[:REPORTED_HISTORY]
        ]

    def find_order_by_client_id(self, account_id: str, client_id: str) -> BrokerOrder | None:
        """The order sent under client_id, or None."""
        self._check_account(account_id)
        row = PaperOrder.objects.filter(
            broker_account_id=self.broker_account_id, account_id=account_id, client_id=client_id
        ).first()
        return self._broker_order(row) if row is not None else None

    # Internals.

    def _contract_table_get(self, root: str) -> ContractInfo | None:
        if self._contract_table is None:
            self._contract_table = _contracts()
        return self._contract_table.get(root)

    def _book(self, account_id: str, symbol: str) -> _Book:
        self._check_account(account_id)
        if self._contract_table is None:
            self._contract_table = _contracts()
        try:
            root = symbol_root(symbol, self._contract_table.keys())
        except SymbolError as error:
            raise OrderRejected(str(error), reason="InvalidContract") from None
        return _Book(self.broker_account_id, account_id, root)

    def _check_account(self, account_id: str) -> None:
        if self._account_ids is None:
            linked = BrokerSubAccount.objects.filter(account_id=self.broker_account_id).values_list(
                "broker_id", flat=True
            )
            self._account_ids = {paper_account_id(self.broker_account_id), *linked}
        if account_id not in self._account_ids:
            raise OrderRejected(
                f"Account {account_id} does not belong to paper account {self.name}.", reason="Unauthorized"
            )

    def _last_price(self, root: str) -> Decimal | None:
        return (
            LastPrice.objects.filter(owner_id=self.owner_id, symbol=root)
            .values_list("price", flat=True)
            .first()
        )

    def _new_order(self, book: _Book, order: OrderRequest, *, status: str) -> PaperOrder:
        try:
            with transaction.atomic():
                return PaperOrder.objects.create(
                    broker_account_id=book.broker_account_id,
                    account_id=book.account_id,
                    client_id=order.client_id,
                    symbol=order.symbol,
                    root=book.root,
                    action=order.action,
                    order_type=order.order_type,
                    quantity=order.quantity,
                    price=order.price,
                    stop_price=order.stop_price,
                    trail_distance=order.trail_distance,
                    time_in_force=order.time_in_force,
                    status=status,
                )
        except IntegrityError:
            raise OrderRejected(
                f"An order with client id {order.client_id} already exists: it was not placed again.",
                reason="DuplicateClientId",
            ) from None

    def _new_leg(
        self, book: _Book, leg: BracketLeg, entry: OrderRequest, *, parent: PaperOrder, action: str, oco: str
    ) -> PaperOrder:
        request = OrderRequest(
            client_id=leg.client_id,
            account_id=entry.account_id,
            account_spec=entry.account_spec,
            symbol=entry.symbol,
            action=action,  # type: ignore[arg-type]
            order_type=leg.order_type,
            quantity=entry.quantity,
            price=leg.price,
            stop_price=leg.stop_price,
            trail_distance=leg.trail_distance,
            time_in_force=leg.time_in_force,
        )
        row = self._new_order(book, request, status=PaperOrder.Status.PENDING)
        row.parent, row.oco_group = parent, oco
        row.save(update_fields=["parent", "oco_group"])
        return row

    def _order_row(self, broker_order_id: str) -> PaperOrder:
        row = None
        if str(broker_order_id).isdigit():
            row = PaperOrder.objects.filter(
                pk=int(broker_order_id), broker_account_id=self.broker_account_id
            ).first()
        if row is None:
            raise OrderRejected(
                f"Paper account {self.name} has no order {broker_order_id}.", reason="UnknownOrder"
            )
        return row

    def _broker_order(self, row: PaperOrder) -> BrokerOrder:
        return BrokerOrder(
            broker_order_id=str(row.pk),
            account_id=row.account_id,
            symbol=row.root,
            action=row.action,  # type: ignore[arg-type]
            order_type=row.order_type,
            quantity=row.quantity,
            price=row.fill_price if row.status == PaperOrder.Status.FILLED else row.price,
            stop_price=row.stop_price,
            status=_STATUSES[PaperOrder.Status(row.status)],
            client_id=row.client_id,
            oco_id=row.oco_group or None,
            parent_id=str(row.parent_id) if row.parent_id else None,
            raw_status=row.status,
        )


def _check_prices(
    order_type: str, price: Decimal | None, stop_price: Decimal | None, trail: Decimal | None
) -> None:
    wants_price = order_type == "Limit"
    wants_stop = order_type in ("Stop", "TrailingStop")
    if order_type not in ("Market", "Limit", "Stop", "TrailingStop"):
        raise OrderRejected(f"Unknown order type {order_type!r}.", reason="InvalidOrderType")
    if wants_price != (price is not None) or wants_stop != (stop_price is not None):
        raise OrderRejected(f"A {order_type} order has the wrong prices.", reason="InvalidPrice")
    if order_type == "TrailingStop" and trail is None:
        raise OrderRejected("A trailing stop needs its trailing distance.", reason="InvalidPrice")


def _no_price(root: str) -> str:
    return (
        f"No price is known for {root} yet, so the paper broker cannot fill a market order: send the price "
        f"with "
        f'the alert ("price": {{{{close}}}}) or post one to /api/prices/.'
    )


def _lock(book: _Book) -> PaperPosition:
    """Return the book's position row, locked for the rest of the transaction (created flat if new)."""
    PaperPosition.objects.get_or_create(
        broker_account_id=book.broker_account_id, account_id=book.account_id, root=book.root
    )
    return PaperPosition.objects.select_for_update().get(
        broker_account_id=book.broker_account_id, account_id=book.account_id, root=book.root
    )


class _Matcher:
    """Fills orders of one locked book against a price; OCO siblings are cancelled, bracket legs activated."""

    def __init__(self, broker: PaperBroker, book: _Book, position: PaperPosition) -> None:
        self.broker = broker
        self.book = book
        self.position = position
        self.contract = broker._contract_table_get(book.root) or CONTRACTS.get(book.root)

    def run(
        self, orders: Iterable[PaperOrder], price: Decimal | None = None, *, arriving: bool = True
    ) -> int:
        """Fill every order the price crosses (default: the last known price); return how many filled.

        `arriving` orders were just placed (or changed): a marketable limit fills at the price, not its limit.
        """
        if price is None:
            price = self.broker._last_price(self.book.root)
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
            fill_price = _crossing_price(row, price, arriving=new)
            if fill_price is None:
                _trail(row, price)
                continue
            cancelled, activated = self.fill(row, fill_price)
            filled += 1
            done.update(cancelled)
            # Legs go on the book now, at this price: one already through it fills at once.
            queue.extend((leg, True) for leg in activated)
        return filled

    def fill(self, row: PaperOrder, price: Decimal) -> tuple[set[int], list[PaperOrder]]:
        """Fill one order at `price`; return the ids of OCO siblings cancelled and the legs put to work."""
        now = self.broker._clock()
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
                broker_account_id=self.book.broker_account_id, oco_group=row.oco_group, status__in=_OPEN
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


def _crossing_price(row: PaperOrder, price: Decimal, *, arriving: bool) -> Decimal | None:
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


def _trail(row: PaperOrder, price: Decimal) -> None:
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
    """Working orders a new price fills (as `_crossing_price` decides) or whose trailing stop it moves."""
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


def paper_price_update(*, owner_id: int, symbol: str, price: Decimal) -> list[int]:
    """Cross the owner's resting paper orders in `symbol` with a new price; return the accounts that filled.

    Only the books with an order the price reaches are locked and matched, each in its own short transaction;
    the caller stores the price first (LastPrice).
    """
    try:
        root = symbol_root(symbol, _contracts().keys())
    except SymbolError:
        return []
    books = (
        PaperOrder.objects.filter(
            reached_by(price),
            broker_account__owner_id=owner_id,
            broker_account__kind=BrokerAccount.Kind.PAPER,
            root=root,
            status=PaperOrder.Status.WORKING,
        )
        .values_list("broker_account_id", "account_id")
        .distinct()
        .order_by("broker_account_id", "account_id")
    )
    touched: list[int] = []
    accounts = {
        account.pk: account for account in BrokerAccount.objects.filter(pk__in={pk for pk, _ in books})
    }
    for broker_account_id, account_id in books:
        account = accounts.get(broker_account_id)
        if account is None:
            continue
        broker = PaperBroker(account)
        book = _Book(broker_account_id, account_id, root)
        with transaction.atomic():
            position = _lock(book)
            working = PaperOrder.objects.filter(
                broker_account_id=broker_account_id,
                account_id=account_id,
                root=root,
                status=PaperOrder.Status.WORKING,
            ).order_by("pk")
            if (
                _Matcher(broker, book, position).run(list(working), price, arriving=False)
                and broker_account_id not in touched
            ):
                touched.append(broker_account_id)
    return touched
