"""Reads of the execution side for pages and the API: signals, decisions, orders, positions, kill switches."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from django.db.models import Count, Prefetch, Q, QuerySet, Sum
from django.utils import timezone

from trading.models import (
    BrokerAccount,
    Decision,
    Fill,
    KillSwitch,
    LastPrice,
    Order,
    Position,
    Recorder,
    Signal,
)
from trading.risk import RecorderBook, session_key, session_range
from trading.selectors import contract_specs

ZERO = Decimal("0.00")
SIGNAL_STATUSES = frozenset(Signal.Status.values)
ORDER_STATUSES = frozenset(Order.Status.values)


def signals_visible_to(user) -> QuerySet[Signal]:
    """Signals of the user's recorders, and signals that reached one of the user's traders."""
    return Signal.objects.filter(
        Q(recorder__owner=user)
        | Q(pk__in=Decision.objects.filter(trader__account__owner=user).values("signal_id"))
    )


def signal_list(
    *, user, recorder_id: int | None = None, status: str | None = None, day: date | None = None
) -> QuerySet[Signal]:
    """The user's signal log, newest first; `day` is a calendar day in the current time zone."""
    signals = signals_visible_to(user).select_related("recorder")
    if recorder_id is not None:
        signals = signals.filter(recorder_id=recorder_id)
    if status:
        signals = signals.filter(status=status)
    if day is not None:
        start = timezone.make_aware(datetime.combine(day, datetime.min.time()))
        end = timezone.make_aware(
            datetime.combine(date.fromordinal(day.toordinal() + 1), datetime.min.time())
        )
        signals = signals.filter(received_at__gte=start, received_at__lt=end)
    return signals.order_by("-received_at", "-pk")


def decisions_for(user) -> QuerySet[Decision]:
    """The user's own decisions (their traders), with what a page shows loaded."""
    return (
        Decision.objects.filter(trader__account__owner=user)
        .select_related("trader", "trader__account", "trader__recorder")
        .order_by("pk")
    )


def orders_for(user) -> QuerySet[Order]:
    """Orders on the user's broker accounts."""
    return Order.objects.filter(broker_account__owner=user)


def signal_detail(*, user, signal_id: int) -> Signal | None:
    """One signal the user may see, with their decisions and each decision's orders; None otherwise."""
    return (
        signals_visible_to(user)
        .select_related("recorder")
        .prefetch_related(
            Prefetch(
                "decisions",
                queryset=decisions_for(user).prefetch_related(
                    Prefetch("orders", queryset=Order.objects.order_by("account_id", "sequence", "pk"))
                ),
                to_attr="visible_decisions",
            )
        )
        .filter(pk=signal_id)
        .first()
    )


def order_list(*, user, account_id: int | None = None, status: str | None = None) -> QuerySet[Order]:
    """The user's orders, newest first."""
    orders = orders_for(user).select_related("broker_account", "trader__recorder")
    if account_id is not None:
        orders = orders.filter(broker_account_id=account_id)
    if status:
        orders = orders.filter(status=status)
    return orders.order_by("-created_at", "-pk")


def position_list(*, user, open_only: bool = False) -> QuerySet[Position]:
    """The user's positions per account and contract."""
    positions = Position.objects.filter(broker_account__owner=user).select_related("broker_account")
    if open_only:
        positions = positions.exclude(quantity=0)
    return positions.order_by("broker_account__name", "account_id", "symbol")


def session_pnl(*, user, at: datetime | None = None, account: BrokerAccount | None = None) -> Decimal:
    """Realized P&L of the user's broker accounts in the current CME session."""
    fills = Fill.objects.filter(broker_account__owner=user, session=session_key(at or timezone.now()))
    if account is not None:
        fills = fills.filter(broker_account=account)
    return fills.aggregate(total=Sum("realized_pnl"))["total"] or ZERO


@dataclass
class OpenPosition:
    """A position with its open P&L at the user's last known price (None when no price is known)."""

    position: Position
    last_price: Decimal | None
    open_pnl: Decimal | None


def open_positions(*, user) -> list[OpenPosition]:
    """The user's open positions valued at their last known prices."""
    positions = list(position_list(user=user, open_only=True))
    if not positions:
        return []
    prices = dict(LastPrice.objects.filter(owner=user).values_list("symbol", "price"))
    specs = contract_specs()
    result = []
    for position in positions:
        price = prices.get(position.symbol)
        contract = specs.get(position.symbol)
        pnl = None
        if price is not None and contract is not None and position.avg_price is not None:
            pnl = RecorderBook(position.quantity, position.avg_price).unrealized_pnl(price, contract)
        result.append(OpenPosition(position, price, pnl))
    return result


@dataclass
class KillSwitchStates:
    """Which kill switches are on for a user: everyone's, their own, and per account."""

    global_on: bool
    user_on: bool
    accounts_on: set[int] = field(default_factory=set)

    @property
    def any_on(self) -> bool:
        """Whether any switch stops this user's orders."""
        return self.global_on or self.user_on or bool(self.accounts_on)


def killswitch_states(*, user) -> KillSwitchStates:
    """The kill switches that concern a user, in one query."""
    rows = KillSwitch.objects.filter(
        Q(scope=KillSwitch.Scope.GLOBAL) | Q(user=user) | Q(broker_account__owner=user), engaged=True
    ).values_list("scope", "broker_account_id")
    states = KillSwitchStates(global_on=False, user_on=False)
    for scope, account_id in rows:
        if scope == KillSwitch.Scope.GLOBAL:
            states.global_on = True
        elif scope == KillSwitch.Scope.USER:
            states.user_on = True
        elif account_id is not None:
            states.accounts_on.add(account_id)
    return states


@dataclass
class LiveSummary:
    """The dashboard's live part: today's signals, open positions, today's P&L and the kill switches."""

    session: date
    signals_today: int
    signal_counts: dict[str, int]
    recent_signals: list[Signal]
    positions: list[OpenPosition]
    session_pnl: Decimal
    open_pnl: Decimal
    orders_working: int
    killswitches: KillSwitchStates
    accounts: list[BrokerAccount]


def live_summary(*, user, at: datetime | None = None, recent: int = 10) -> LiveSummary:
    """What the dashboard polls: a handful of small queries whatever the history holds."""
    at = at or timezone.now()
    key = session_key(at)
    start = session_start_of(key)
    today = signals_visible_to(user).filter(received_at__gte=start)
    counts = Counter(
        {row["status"]: row["n"] for row in today.order_by().values("status").annotate(n=Count("pk"))}
    )
    positions = open_positions(user=user)
    return LiveSummary(
        session=key,
        signals_today=sum(counts.values()),
        signal_counts=dict(counts),
        recent_signals=list(today.select_related("recorder").order_by("-received_at", "-pk")[:recent]),
        positions=positions,
        session_pnl=session_pnl(user=user, at=at),
        open_pnl=sum((item.open_pnl for item in positions if item.open_pnl is not None), ZERO),
        orders_working=orders_for(user).filter(status=Order.Status.WORKING).count(),
        killswitches=killswitch_states(user=user),
        accounts=list(BrokerAccount.objects.owned_by(user).order_by("name", "pk")),
    )


def session_start_of(key: date) -> datetime:
    """When the CME trading day `key` began (17:00 Chicago the evening before), in UTC."""
    return session_range(key)[0]


def recorders_for_filter(user) -> QuerySet[Recorder]:
    """The recorders a user can filter the signal log by."""
    return Recorder.objects.owned_by(user).only("id", "name").order_by("name", "pk")
