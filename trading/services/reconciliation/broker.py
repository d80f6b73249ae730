"""The broker as one run sees it: read once, written through, and orders sent through the pipeline."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from trading.brokers.base import (
    Broker,
    BrokerOrder,
    BrokerPosition,
    OrderRequest,
    PlacedOco,
    PlacedOrder,
)
from trading.errors import RetryLater
from trading.models import (
    Order,
)
from trading.services.contracts import contract_root
from trading.services.orders import (
    order_submit,
)
from trading.symbols import SymbolError


class BrokerSnapshot(Broker):
    """A broker whose lists are read once per run and shared by every step; any change forgets them.

    In a dry run every changing call is refused before it reaches the broker.
    """

    def __init__(self, broker: Broker, *, dry_run: bool) -> None:
        self._broker = broker
        self._dry_run = dry_run
        self._reads: dict[tuple[str, str], list[Any]] = {}
        self.changes = 0

    def forget(self) -> None:
        """Read the broker again next time (after a change, or to confirm one)."""
        self._reads.clear()

    def _read(self, kind: str, account_id: str, load: Callable[[], list[Any]]) -> list[Any]:
        key = (kind, account_id)
        if key not in self._reads:
            self._reads[key] = load()
        return self._reads[key]

    def _change(self, call: Callable[[], Any]) -> Any:
        if self._dry_run:
            raise AssertionError("A dry run must not change anything at the broker.")
        self.changes += 1
        try:
            return call()
        finally:
            self.forget()

    def list_accounts(self):
        return self._broker.list_accounts()

    def account_balance(self, account_id: str):
        return self._broker.account_balance(account_id)

    def list_orders(self, account_id: str) -> list[BrokerOrder]:
        return self._read("orders", account_id, lambda: self._broker.list_orders(account_id))

    def list_fills(self, account_id: str):
        return self._read("fills", account_id, lambda: self._broker.list_fills(account_id))

    def list_positions(self, account_id: str) -> list[BrokerPosition]:
        return self._read("positions", account_id, lambda: self._broker.list_positions(account_id))

    def find_order_by_client_id(self, account_id: str, client_id: str) -> BrokerOrder | None:
        for order in self.list_orders(account_id):
            if order.client_id == client_id:
                return order
        # The lists hold recent orders only; the broker's own lookup is the authority.
        return self._broker.find_order_by_client_id(account_id, client_id)

    def place_order(self, order: OrderRequest) -> PlacedOrder:
        return self._change(lambda: self._broker.place_order(order))

    def place_bracket(self, bracket):
        return self._change(lambda: self._broker.place_bracket(bracket))

    def place_oco(self, order: OrderRequest, other: OrderRequest) -> PlacedOco:
        return self._change(lambda: self._broker.place_oco(order, other))

    def modify_order(self, broker_order_id: str, **changes: Any) -> None:
        return self._change(lambda: self._broker.modify_order(broker_order_id, **changes))

    def cancel_order(self, broker_order_id: str) -> None:
        return self._change(lambda: self._broker.cancel_order(broker_order_id))

    def liquidate_position(self, account_id: str, symbol: str) -> PlacedOrder | None:
        return self._change(lambda: self._broker.liquidate_position(account_id, symbol))


def root_of(symbol: str) -> str | None:
    try:
        return contract_root(symbol)
    except SymbolError:
        return None


def broker_positions(broker: Broker, account_id: str) -> dict[str, tuple[int, Decimal | None]]:
    """Non-flat positions by contract root; several contract months of one root (a roll) count as one."""
    result: dict[str, tuple[int, Decimal | None]] = {}
    for position in broker.list_positions(account_id):
        root = root_of(position.symbol)
        if root is None or not position.quantity:
            continue
        quantity, average = result.get(root, (0, None))
        total = quantity + position.quantity
        if not quantity:
            average = position.avg_price
        elif (
            average is not None and position.avg_price is not None and total and (quantity > 0) == (total > 0)
        ):
            average = (average * quantity + position.avg_price * position.quantity) / total
        result[root] = (total, average)
    return {root: value for root, value in result.items() if value[0]}


def order_send(order: Order, broker: Broker, *, oco_partner: Order | None = None) -> Order:
    """Send a stored order (with its OCO partner) through the pipeline's order_submit: claimed, sent once."""
    try:
        if oco_partner is not None:
            return order_submit(order=order, broker=broker, oco_partner=oco_partner)
        return order_submit(order=order, broker=broker)
    except RetryLater as retry:
        # Certainly not placed; the next run sees the position still lacking and tries again.
        ids = [order.pk] + ([oco_partner.pk] if oco_partner is not None else [])
        Order.objects.filter(pk__in=ids, status=Order.Status.PENDING).update(
            status=Order.Status.FAILED,
            error=f"Not sent: {retry.message}",
            cancel_reason=Order.CancelReason.NOT_SENT,
        )
        order.refresh_from_db()
        return order


def order_outcome(order: Order) -> str:
    """What became of a sent order, as a sentence (the broker's words verbatim when it refused)."""
    if order.status == Order.Status.WORKING:
        return f"It is working as order {order.broker_order_id}."
    if order.status == Order.Status.FILLED:
        return f"It filled as order {order.broker_order_id}."
    if order.status == Order.Status.REJECTED:
        return f"The broker refused it: {order.error}"
    if order.status == Order.Status.UNKNOWN:
        return "Its outcome is unknown: it is looked up at the broker, never sent again."
    return order.error or f"It is {order.get_status_display().lower()}."
