"""Reads that pages, the API and services share: settings, tokens, contracts, performance, executions."""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from django.db.models import Count, DecimalField, OuterRef, Prefetch, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from trading import caches
from trading.models import (
    PLAN_SETTING_FIELDS,
    RISK_SETTING_FIELDS,
    BrokerAccount,
    ContractSpec,
    Decision,
    Fill,
    KillSwitch,
    LastPrice,
    Order,
    Position,
    Recorder,
    RecorderPosition,
    RecorderTrade,
    Signal,
    Trader,
    TraderSubAccount,
)
from trading.plans import PlanSettings, merge_plan_settings
from trading.risk import RecorderBook, RiskSettings, RiskState, merge_settings, session_key, session_range
from trading.symbols import ContractInfo, SymbolError, contract_for

ZERO = Decimal("0.00")
SIGNAL_STATUSES = frozenset(Signal.Status.values)
ORDER_STATUSES = frozenset(Order.Status.values)
WEBHOOK_PATH = "/webhook/{token}"
# Tokens are 43 characters (secrets.token_urlsafe(32)); anything far longer is not worth hashing.
MAX_TOKEN_LENGTH = 128

# The ready-to-paste message of shared/specs/webhook.md; placeholders are TradingView's.
STRATEGY_ALERT_MESSAGE = (
    '{"action": "{{strategy.order.action}}", "ticker": "{{ticker}}", '
    '"contracts": {{strategy.order.contracts}},\n'
    ' "price": {{close}}, "market_position": "{{strategy.market_position}}", '
    '"position_size": {{strategy.position_size}},\n'
    ' "id": "{{ticker}}-{{strategy.order.id}}-{{timenow}}", "time": "{{timenow}}"}'
)
INDICATOR_ALERT_MESSAGE = (
    '{{"action": "{action}", "ticker": "{{{{ticker}}}}", "price": {{{{close}}}}, '
    '"id": "{{{{ticker}}}}-{action}-{{{{timenow}}}}", "time": "{{{{timenow}}}}"}}'
)


# --- contracts ----------------------------------------------------------------------------------------------


def contract_specs() -> dict[str, ContractInfo]:
    """Return every contract specification by root, as the pure value the risk engine and plans use.

    A per-process copy (`trading.caches`): a signal reads them several times, an operator changes them rarely.
    """
    return caches.remembered("contract_specs", _contract_specs_load)


def _contract_specs_load() -> dict[str, ContractInfo]:
    return {spec.root: spec.as_contract_info() for spec in ContractSpec.objects.all()}


def contract_for_symbol(symbol: str) -> ContractInfo:
    """Return the contract of `ES`, `ESZ6`, `ES1!` or `CME_MINI:ES1!`; SymbolError for an unknown root."""
    return contract_for(symbol, contract_specs())


def contract_or_none(symbol: str) -> ContractInfo | None:
    """Return the contract of a symbol, or None when it resolves to no known contract."""
    try:
        return contract_for_symbol(symbol)
    except SymbolError:
        return None


# --- webhook tokens -----------------------------------------------------------------------------------------


class AccountNotFound(LookupError):
    """No broker account, or more than one, answers to what an operator typed; the message says which."""


def broker_account_by_id_or_name(value: str) -> BrokerAccount:
    """The broker account an operator names by id or by its unique name (management commands)."""
    if value.isdigit():
        found = BrokerAccount.objects.filter(pk=int(value)).first()
        if found is not None:
            return found
    matches = list(BrokerAccount.objects.filter(name=value)[:2])
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise AccountNotFound(f"Several broker accounts are named {value!r}: give the account's id instead.")
    raise AccountNotFound(f"There is no broker account with the id or name {value!r}.")


def webhook_token_digest(token: str) -> str:
    """Return the SHA-256 hex digest a recorder's webhook token is looked up by."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def recorder_for_webhook_token(token: str, *, fields: Sequence[str] = ()) -> Recorder | None:
    """Return the recorder a webhook token belongs to, or None; one indexed query, constant-time compare.

    `fields` limits what is loaded (the webhook needs only a few); by default everything but the token.
    """
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    digest = webhook_token_digest(token)
    rows = Recorder.objects.filter(webhook_token_hash=digest).order_by()
    # The encrypted token is never loaded: decrypting it costs time on the hot path and nobody there needs it.
    rows = rows.only(*fields, "webhook_token_hash") if fields else rows.defer("webhook_token")
    recorder = rows.first()
    if recorder is None or not hmac.compare_digest(recorder.webhook_token_hash, digest):
        return None
    return recorder


def webhook_path(token: str) -> str:
    """Return the path TradingView posts a recorder's alerts to."""
    return WEBHOOK_PATH.format(token=token)


def alert_messages(recorder: Recorder) -> list[tuple[str, str]]:
    """Return (label, message) pairs to paste into TradingView's alert message box for this recorder."""
    if recorder.strategy_type == Recorder.StrategyType.INDICATOR:
        return [
            (f"{action.capitalize()} alert", INDICATOR_ALERT_MESSAGE.format(action=action))
            for action in ("buy", "sell", "close")
        ]
    return [("Strategy alert", STRATEGY_ALERT_MESSAGE)]


# --- settings -----------------------------------------------------------------------------------------------


def _targets(owner: Recorder | Trader) -> list[dict]:
    # .all() so a prefetch_related("targets") is used; ordering by number is the model's.
    return [target.as_item() for target in owner.targets.all()]


def recorder_risk_settings(recorder: Recorder, trader: Trader | None = None) -> RiskSettings:
    """Return the recorder's risk filters, with the trader's overrides applied when a trader is given."""
    settings = RiskSettings.from_fields({name: getattr(recorder, name) for name in RISK_SETTING_FIELDS})
    if trader is None:
        return settings
    return merge_settings(settings, {name: getattr(trader, name) for name in RISK_SETTING_FIELDS})


def recorder_plan_settings(recorder: Recorder, trader: Trader | None = None) -> PlanSettings:
    """Return the recorder's take-profit, stop and average-down settings, with a trader's overrides."""
    values = {name: getattr(recorder, name) for name in PLAN_SETTING_FIELDS}
    settings = PlanSettings.from_fields({**values, "tp_targets": _targets(recorder)})
    if trader is None:
        return settings
    overrides = {name: getattr(trader, name) for name in PLAN_SETTING_FIELDS}
    overrides["tp_targets"] = _targets(trader) if trader.tp_targets_overridden else None
    return merge_plan_settings(settings, overrides)


def recorder_source_settings(recorders: Iterable[Recorder]) -> dict[str, dict]:
    """Return each recorder's settings for the trader form to show as the defaults (JSON-ready)."""
    result = {}
    for recorder in recorders:
        values = {}
        for name in (*RISK_SETTING_FIELDS, *PLAN_SETTING_FIELDS):
            value = getattr(recorder, name)
            if isinstance(value, Decimal):
                value = format(value.normalize(), "f")
            elif hasattr(value, "strftime"):
                value = value.strftime("%H:%M")
            values[name] = value
        values["tp_targets"] = [
            {"value": format(item["value"].normalize(), "f"), "trim": item["trim"]}
            for item in _targets(recorder)
        ]
        values["symbol"] = recorder.symbol
        result[str(recorder.pk)] = values
    return result


# --- recorder performance -----------------------------------------------------------------------------------


def recorder_book(recorder: Recorder) -> RecorderBook:
    """Return the recorder's virtual position (flat when it never traded)."""
    row = RecorderPosition.objects.filter(recorder=recorder).first()
    if row is None:
        return RecorderBook()
    return RecorderBook(row.quantity, row.avg_price, row.realized_pnl)


def recorder_session_pnl(recorder: Recorder | int, *, at: datetime | None = None) -> Decimal:
    """Return a recorder's (or recorder id's) realized P&L in the CME session holding `at` (default now)."""
    key = session_key(at or timezone.now())
    total = RecorderTrade.objects.filter(recorder=recorder, session=key).aggregate(total=Sum("realized_pnl"))
    return total["total"] or ZERO


def recorder_risk_state(recorder: Recorder, *, at: datetime) -> RiskState:
    """Return what the recorder's own filters know of the past, for a signal received at `at`."""
    row = RecorderPosition.objects.filter(recorder=recorder).first() or RecorderPosition(recorder=recorder)
    return position_risk_state(row, at=at)


def position_risk_state(row: RecorderPosition, *, at: datetime) -> RiskState:
    """Return the RiskState a recorder's stored counters and this session's realized P&L make at `at`."""
    key = session_key(at)
    # Counters of an earlier session are reset here, so the session P&L below is never zeroed by for_session.
    return RiskState(
        position=row.signal_position,
        last_signal_at=row.last_signal_at,
        signals_this_session=row.signals_this_session if row.session == key else 0,
        realized_pnl_session=recorder_session_pnl(row.recorder_id, at=at),
        signal_count=row.signal_count,
        session=key,
    )


@dataclass(frozen=True)
class EquityPoint:
    """The recorder's cumulative realized P&L after one trade."""

    at: datetime
    cumulative_pnl: Decimal


@dataclass(frozen=True)
class SessionResult:
    """Realized P&L and number of trades of one trading day."""

    session: date
    realized_pnl: Decimal
    trades: int


def recorder_equity_curve(recorder: Recorder, *, limit: int = 500) -> list[EquityPoint]:
    """Return the cumulative realized P&L after each of the recorder's last `limit` trades, oldest first."""
    rows = (
        RecorderTrade.objects.filter(recorder=recorder)
        .order_by("-executed_at", "-pk")
        .values_list("executed_at", "cumulative_pnl")[:limit]
    )
    return [EquityPoint(at, pnl) for at, pnl in reversed(rows)]


def recorder_session_results(recorder: Recorder, *, sessions: int = 30) -> list[SessionResult]:
    """Return realized P&L per trading day for the recorder's last `sessions` trading days, oldest first."""
    rows = (
        RecorderTrade.objects.filter(recorder=recorder)
        .values("session")
        .annotate(pnl=Sum("realized_pnl"), trades=Count("pk"))
        .order_by("-session")[:sessions]
    )
    return [SessionResult(row["session"], row["pnl"] or ZERO, row["trades"]) for row in reversed(rows)]


def recorder_recent_trades(recorder: Recorder, *, limit: int = 20) -> list[RecorderTrade]:
    """Return the recorder's latest virtual trades, newest first."""
    return list(RecorderTrade.objects.filter(recorder=recorder).order_by("-executed_at", "-pk")[:limit])


def with_performance(recorders: QuerySet[Recorder], *, at: datetime | None = None) -> QuerySet[Recorder]:
    """Annotate recorders with `session_pnl` and `session_trades` of the current session, in one query."""
    key = session_key(at or timezone.now())
    today = RecorderTrade.objects.filter(recorder=OuterRef("pk"), session=key).order_by().values("recorder")
    money = DecimalField(max_digits=16, decimal_places=2)
    return recorders.select_related("virtual_position").annotate(
        session_pnl=Coalesce(
            Subquery(today.annotate(total=Sum("realized_pnl")).values("total")[:1], output_field=money),
            Value(ZERO, output_field=money),
        ),
        session_trades=Coalesce(Subquery(today.annotate(n=Count("pk")).values("n")[:1]), Value(0)),
    )


# --- traders ------------------------------------------------------------------------------------------------


def traders_for_recorder(recorder: Recorder) -> QuerySet[Trader]:
    """Return the enabled traders a recorder's signals go to, with what executing them needs loaded."""
    # A trader of another user follows a recorder only while it is public: making it private stops them.
    traders = Trader.objects.filter(recorder=recorder, enabled=True)
    if recorder.is_private:
        traders = traders.filter(account__owner_id=recorder.owner_id)
    return traders.select_related("account", "recorder").prefetch_related(
        "targets",
        Prefetch(
            "subaccount_links",
            queryset=TraderSubAccount.objects.select_related("subaccount").filter(subaccount__active=True),
        ),
    )


def trader_can_follow(trader: Trader) -> bool:
    """Return whether the trader's owner may still use its recorder (their own, or public)."""
    return not trader.recorder.is_private or trader.recorder.owner_id == trader.account.owner_id


# --- dashboard ----------------------------------------------------------------------------------------------


@dataclass
class DashboardSummary:
    """What the dashboard shows of one user's trading today."""

    session: date
    session_pnl: Decimal
    recorders: list[Recorder]
    open_positions: list[Recorder]
    accounts_needing_attention: list[BrokerAccount]
    daily_pnl: list[SessionResult] = field(default_factory=list)
    trader_count: int = 0
    account_count: int = 0


def dashboard_summary(user, *, at: datetime | None = None, sessions: int = 30) -> DashboardSummary:
    """Return today's P&L, open virtual positions and accounts that need attention for one user."""
    at = at or timezone.now()
    key = session_key(at)
    recorders = list(with_performance(Recorder.objects.owned_by(user).order_by("name", "pk"), at=at))
    rows = (
        RecorderTrade.objects.filter(recorder__owner=user)
        .values("session")
        .annotate(pnl=Sum("realized_pnl"), trades=Count("pk"))
        .order_by("-session")[:sessions]
    )
    accounts = list(
        BrokerAccount.objects.owned_by(user).annotate(trader_count=Count("traders")).order_by("name", "pk")
    )
    return DashboardSummary(
        session=key,
        session_pnl=sum((recorder.session_pnl for recorder in recorders), ZERO),
        recorders=recorders,
        open_positions=[r for r in recorders if _open(r)],
        accounts_needing_attention=[account for account in accounts if account.needs_attention],
        daily_pnl=[
            SessionResult(row["session"], row["pnl"] or ZERO, row["trades"]) for row in reversed(rows)
        ],
        trader_count=sum(account.trader_count for account in accounts),
        account_count=len(accounts),
    )


def _open(recorder: Recorder) -> bool:
    try:
        return recorder.virtual_position.quantity != 0
    except RecorderPosition.DoesNotExist:
        return False


# --- signals, decisions, orders, positions and kill switches ------------------------------------------------


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


# --- live dashboard -----------------------------------------------------------------------------------------


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
