"""The paper broker: the Broker interface over one paper account's books."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Sum
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
from trading.brokers.paper.book import (
    OPEN_STATUSES,
    PaperBook,
    PaperMatcher,
    paper_contracts,
    position_lock,
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
from trading.symbols import ContractInfo, SymbolError, symbol_root

PAPER_STARTING_CASH = Decimal("100000.00")
# How many of an account's latest orders and fills are reported, as a real broker reports only recent ones.
REPORTED_HISTORY = 500
_STATUSES = {
    PaperOrder.Status.PENDING: OrderStatus.PENDING,
    PaperOrder.Status.WORKING: OrderStatus.WORKING,
    PaperOrder.Status.FILLED: OrderStatus.FILLED,
    PaperOrder.Status.CANCELLED: OrderStatus.CANCELLED,
}


def paper_account_id(broker_account_id: int) -> str:
    """Return the id of the one trading account a paper broker account holds."""
    return f"paper-{broker_account_id}"


def _opposite(action: str) -> str:
    return "Sell" if action == "Buy" else "Buy"


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
            position = position_lock(book)
            row = self._new_order(book, order, status=PaperOrder.Status.WORKING)
            if order.order_type == "Market" and self._last_price(book.root) is None:
                raise OrderRejected(_no_price(book.root), reason="NoQuote")
            self.matcher(book, position).run([row])
        return PlacedOrder(broker_order_id=str(row.pk))

    def place_bracket(self, bracket: BracketRequest) -> PlacedBracket:
        """Place an entry with its legs; the legs go on the book once it fills and cancel each other."""
        entry = bracket.entry
        book = self._book(entry.account_id, entry.symbol)
        with transaction.atomic():
            position = position_lock(book)
            if entry.order_type == "Market" and self._last_price(book.root) is None:
                raise OrderRejected(_no_price(book.root), reason="NoQuote")
            parent = self._new_order(book, entry, status=PaperOrder.Status.WORKING)
            legs = [leg for leg in (bracket.take_profit, bracket.stop_loss) if leg is not None]
            oco = f"oco-{parent.pk}" if len(legs) == 2 else ""
            leg_rows = [
                self._new_leg(book, leg, entry, parent=parent, action=bracket.exit_action, oco=oco)
                for leg in legs
            ]
            self.matcher(book, position).run([parent])
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
            position = position_lock(book)
            first = self._new_order(book, order, status=PaperOrder.Status.WORKING)
            second = self._new_order(book, other, status=PaperOrder.Status.WORKING)
            oco = f"oco-{first.pk}"
            PaperOrder.objects.filter(pk__in=(first.pk, second.pk)).update(oco_group=oco)
            first.oco_group = second.oco_group = oco
            self.matcher(book, position).run([first, second])
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
        book = PaperBook(self.broker_account_id, row.account_id, row.root)
        with transaction.atomic():
            position = position_lock(book)
            row = PaperOrder.objects.get(pk=row.pk)
            if row.status not in OPEN_STATUSES:
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
                self.matcher(book, position).run([row])

    def cancel_order(self, broker_order_id: str) -> None:
        """Cancel a working order (and the legs waiting on it)."""
        row = self._order_row(broker_order_id)
        book = PaperBook(self.broker_account_id, row.account_id, row.root)
        with transaction.atomic():
            position_lock(book)
            cancelled = PaperOrder.objects.filter(pk=row.pk, status__in=OPEN_STATUSES).update(
                status=PaperOrder.Status.CANCELLED, updated_at=self._clock()
            )
            if not cancelled:
                state = PaperOrder.objects.get(pk=row.pk).get_status_display().lower()
                raise OrderRejected(f"Order {broker_order_id} is {state}: there is nothing to cancel.")
            PaperOrder.objects.filter(parent_id=row.pk, status__in=OPEN_STATUSES).update(
                status=PaperOrder.Status.CANCELLED, updated_at=self._clock()
            )

    def liquidate_position(self, account_id: str, symbol: str) -> PlacedOrder | None:
        """Cancel the contract's open orders and close the position at the last price; None when flat."""
        book = self._book(account_id, symbol)
        with transaction.atomic():
            position = position_lock(book)
            PaperOrder.objects.filter(
                broker_account_id=book.broker_account_id,
                account_id=account_id,
                root=book.root,
                status__in=OPEN_STATUSES,
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
            self.matcher(book, position).fill(row, price)
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

    def matcher(self, book: PaperBook, position: PaperPosition) -> PaperMatcher:
        """The matcher of one of this account's books, locked by the caller."""
        return PaperMatcher(
            book,
            position,
            contract=self._contract_table_get(book.root),
            clock=self._clock,
            last_price=lambda: self._last_price(book.root),
        )

    def _contract_table_get(self, root: str) -> ContractInfo | None:
        if self._contract_table is None:
            self._contract_table = paper_contracts()
        return self._contract_table.get(root)

    def _book(self, account_id: str, symbol: str) -> PaperBook:
        self._check_account(account_id)
        if self._contract_table is None:
            self._contract_table = paper_contracts()
        try:
            root = symbol_root(symbol, self._contract_table.keys())
        except SymbolError as error:
            raise OrderRejected(str(error), reason="InvalidContract") from None
        return PaperBook(self.broker_account_id, account_id, root)

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

    def _new_order(self, book: PaperBook, order: OrderRequest, *, status: str) -> PaperOrder:
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
        self,
        book: PaperBook,
        leg: BracketLeg,
        entry: OrderRequest,
        *,
        parent: PaperOrder,
        action: str,
        oco: str,
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
