"""The one interface every broker implements, its value types and the errors money safety hangs on."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Literal

OrderAction = Literal["Buy", "Sell"]
OrderType = Literal["Market", "Limit", "Stop", "TrailingStop"]
TimeInForce = Literal["Day", "GTC", "IOC", "FOK", "GTD"]

ORDER_ACTIONS: frozenset[str] = frozenset({"Buy", "Sell"})
ORDER_TYPES: frozenset[str] = frozenset({"Market", "Limit", "Stop", "TrailingStop"})
TIMES_IN_FORCE: frozenset[str] = frozenset({"Day", "GTC", "IOC", "FOK", "GTD"})
MAX_CLIENT_ID_LENGTH = 64


class OrderStatus(StrEnum):
    """An order's state in our words, whatever the broker calls it."""

    PENDING = "pending"  # accepted, not yet on the book (new, or a bracket leg waiting for its entry)
    WORKING = "working"  # on the book
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    UNKNOWN = "unknown"


# Errors. Callers decide what to do from the class alone, so each one says exactly what is known.


class BrokerError(Exception):
    """Base of every broker failure; the message is a sentence a person can act on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class OrderRejected(BrokerError):
    """The broker refused: the request definitely did not take effect; `text` is its words verbatim."""

    def __init__(self, text: str, *, reason: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.reason = reason


class BrokerUnavailable(BrokerError):
    """The request certainly did not take effect (not sent, refused for load, failed read): safe to retry."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class OrderOutcomeUnknown(BrokerError):
    """An order-changing request may have reached the broker: never resend it blind, reconcile first."""


class BrokerNeedsAttention(BrokerError):
    """The account cannot be used until its owner acts (wrong credentials, captcha, OAuth expired)."""

    def __init__(self, message: str, *, reason: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


# Requests.


def _check_price(name: str, value: Decimal | None) -> None:
    if value is not None and (not isinstance(value, Decimal) or not value.is_finite() or value <= 0):
        raise ValueError(f"{name} must be a positive Decimal, not {value!r}.")


def _check_client_id(client_id: str) -> None:
    if not isinstance(client_id, str) or not client_id or len(client_id) > MAX_CLIENT_ID_LENGTH:
        raise ValueError(f"client_id must be 1 to {MAX_CLIENT_ID_LENGTH} characters, not {client_id!r}.")


def _check_prices_for_type(
    order_type: str, price: Decimal | None, stop_price: Decimal | None, trail_distance: Decimal | None
) -> None:
    if order_type not in ORDER_TYPES:
        raise ValueError(f"order_type must be one of {sorted(ORDER_TYPES)}, not {order_type!r}.")
    _check_price("price", price)
    _check_price("stop_price", stop_price)
    _check_price("trail_distance", trail_distance)
    # Each type carries exactly the prices it uses, so nothing sent is silently ignored by the broker.
    wants_price = order_type == "Limit"
    wants_stop = order_type in ("Stop", "TrailingStop")
    wants_trail = order_type == "TrailingStop"
    for name, value, wanted in (
        ("price", price, wants_price),
        ("stop_price", stop_price, wants_stop),
        ("trail_distance", trail_distance, wants_trail),
    ):
        if wanted and value is None:
            raise ValueError(f"A {order_type} order needs a {name}.")
        if not wanted and value is not None:
            raise ValueError(f"A {order_type} order takes no {name}.")


@dataclass(frozen=True)
class OrderRequest:
    """One order to place; `client_id` is stored by us before the call and sent to the broker."""

    client_id: str
    account_id: str
    account_spec: str
    symbol: str
    action: OrderAction
    order_type: OrderType
    quantity: int
    price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_distance: Decimal | None = None
    time_in_force: TimeInForce = "Day"

    def __post_init__(self) -> None:
        _check_client_id(self.client_id)
        if not self.account_id or not self.symbol:
            raise ValueError("An order needs an account_id and a symbol.")
        if self.action not in ORDER_ACTIONS:
            raise ValueError(f"action must be Buy or Sell, not {self.action!r}.")
        # bool is an int; a quantity of 0 must never pass as "not set".
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int) or self.quantity <= 0:
            raise ValueError(f"quantity must be a positive whole number of contracts, not {self.quantity!r}.")
        _check_prices_for_type(self.order_type, self.price, self.stop_price, self.trail_distance)
        if self.time_in_force not in TIMES_IN_FORCE:
            raise ValueError(
                f"time_in_force must be one of {sorted(TIMES_IN_FORCE)}, not {self.time_in_force!r}."
            )


def check_oco_pair(order: OrderRequest, other: OrderRequest) -> None:
    """Raise ValueError unless two orders can form a one-cancels-other pair: two exits of one position."""
    if (order.account_id, order.symbol, order.action, order.quantity) != (
        other.account_id,
        other.symbol,
        other.action,
        other.quantity,
    ):
        raise ValueError("An OCO pair needs the same account, symbol, side and quantity on both orders.")
    if order.client_id == other.client_id:
        raise ValueError("The two orders of an OCO pair need distinct client ids.")


@dataclass(frozen=True)
class BracketLeg:
    """A protective order on an entry: same account, symbol and quantity; opposite side; absolute prices."""

    client_id: str
    order_type: OrderType
    price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_distance: Decimal | None = None
    time_in_force: TimeInForce = "GTC"

    def __post_init__(self) -> None:
        _check_client_id(self.client_id)
        if self.order_type == "Market":
            raise ValueError("A bracket leg must be a Limit, Stop or TrailingStop order.")
        _check_prices_for_type(self.order_type, self.price, self.stop_price, self.trail_distance)
        if self.time_in_force not in TIMES_IN_FORCE:
            raise ValueError(
                f"time_in_force must be one of {sorted(TIMES_IN_FORCE)}, not {self.time_in_force!r}."
            )


@dataclass(frozen=True)
class BracketRequest:
    """An entry with its take-profit and stop loss, placed together so protection exists once it fills."""

    entry: OrderRequest
    take_profit: BracketLeg | None = None
    stop_loss: BracketLeg | None = None

    def __post_init__(self) -> None:
        ids = [self.entry.client_id] + [leg.client_id for leg in (self.take_profit, self.stop_loss) if leg]
        if len(set(ids)) != len(ids):
            raise ValueError("The entry and its bracket legs need distinct client ids.")

    @property
    def exit_action(self) -> OrderAction:
        """The side of the protective legs: the opposite of the entry."""
        return "Sell" if self.entry.action == "Buy" else "Buy"


# Answers.


@dataclass(frozen=True)
class PlacedOrder:
    """The broker accepted an order under this id."""

    broker_order_id: str


@dataclass(frozen=True)
class PlacedBracket:
    """The broker's ids for an entry and the legs that were sent with it."""

    entry_id: str
    take_profit_id: str | None
    stop_loss_id: str | None


@dataclass(frozen=True)
class PlacedOco:
    """The broker's ids for two orders placed as a one-cancels-other pair."""

    order_id: str
    other_id: str


@dataclass(frozen=True)
class BrokerOrder:
    """An order as the broker sees it now; quantity and order_type are None if the broker gave no version."""

    broker_order_id: str
    account_id: str
    symbol: str
    action: OrderAction
    order_type: str | None
    quantity: int | None
    price: Decimal | None
    stop_price: Decimal | None
    status: OrderStatus
    client_id: str | None
    oco_id: str | None
    parent_id: str | None
    raw_status: str

    @property
    def is_open(self) -> bool:
        """True while the order can still fill (pending or working)."""
        return self.status in (OrderStatus.PENDING, OrderStatus.WORKING)


@dataclass(frozen=True)
class BrokerPosition:
    """A non-flat position: quantity is signed (short is negative)."""

    account_id: str
    symbol: str
    quantity: int
    avg_price: Decimal | None


@dataclass(frozen=True)
class BrokerFill:
    """One execution; match it to our order by broker_order_id."""

    broker_fill_id: str
    broker_order_id: str
    account_id: str
    symbol: str
    action: OrderAction
    quantity: int
    price: Decimal
    timestamp: datetime | None


@dataclass(frozen=True)
class SubAccount:
    """A trading account under a login; orders name its `id` as account_id and its `name` as account_spec."""

    id: str
    name: str
    active: bool


@dataclass(frozen=True)
class AccountBalance:
    """Money in an account; None where the broker did not say."""

    account_id: str
    cash_balance: Decimal | None
    net_liquidation: Decimal | None
    realized_pnl: Decimal | None
    open_pnl: Decimal | None


class Broker(abc.ABC):
    """What the trading domain needs from a broker; implementations raise only BrokerError subclasses."""

    @abc.abstractmethod
    def list_accounts(self) -> list[SubAccount]:
        """Every sub-account this connection can trade."""

    @abc.abstractmethod
    def place_order(self, order: OrderRequest) -> PlacedOrder:
        """Place one order."""

    @abc.abstractmethod
    def place_bracket(self, bracket: BracketRequest) -> PlacedBracket:
        """Place an entry with its take-profit and stop loss in one request."""

    def place_oco(self, order: OrderRequest, other: OrderRequest) -> PlacedOco:
        """Place two exits of one position (same account, symbol, side and quantity) as an OCO pair.

        The broker itself cancels one when the other fills, so two prices in quick succession can never fill
        both (which would reverse the position). Not abstract so that read-only brokers need not offer it.
        """
        raise OrderRejected("This broker cannot place one-cancels-other orders.", reason="NotSupported")

    @abc.abstractmethod
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
        """Change a working order; read it back to see the change took effect."""

    @abc.abstractmethod
    def cancel_order(self, broker_order_id: str) -> None:
        """Cancel a working order."""

    @abc.abstractmethod
    def liquidate_position(self, account_id: str, symbol: str) -> PlacedOrder | None:
        """Cancel the position's orders and close it; None when the broker placed no closing order."""

    @abc.abstractmethod
    def list_positions(self, account_id: str) -> list[BrokerPosition]:
        """The account's non-flat positions."""

    @abc.abstractmethod
    def list_orders(self, account_id: str) -> list[BrokerOrder]:
        """The account's orders the broker still reports, newest first."""

    @abc.abstractmethod
    def list_fills(self, account_id: str) -> list[BrokerFill]:
        """The account's fills the broker still reports."""

    @abc.abstractmethod
    def find_order_by_client_id(self, account_id: str, client_id: str) -> BrokerOrder | None:
        """The order we sent under client_id, or None if the broker never took it."""

    @abc.abstractmethod
    def account_balance(self, account_id: str) -> AccountBalance:
        """Cash and P&L of one account."""
