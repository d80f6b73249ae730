"""Reads of the trading domain that more than one caller needs: settings, tokens, contracts, performance."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from django.db.models import Count, DecimalField, OuterRef, Prefetch, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from trading.models import (
    PLAN_SETTING_FIELDS,
    RISK_SETTING_FIELDS,
    BrokerAccount,
    ContractSpec,
    Recorder,
    RecorderPosition,
    RecorderTrade,
    Trader,
    TraderSubAccount,
)
from trading.plans import PlanSettings, merge_plan_settings
from trading.risk import RecorderBook, RiskSettings, RiskState, merge_settings, session_key
from trading.symbols import ContractInfo, SymbolError, contract_for

ZERO = Decimal("0.00")
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
    """Return every contract specification by root, as the pure value the risk engine and plans use."""
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


def webhook_token_digest(token: str) -> str:
    """Return the SHA-256 hex digest a recorder's webhook token is looked up by."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def recorder_for_webhook_token(token: str) -> Recorder | None:
    """Return the recorder a webhook token belongs to, or None; one indexed query, constant-time compare."""
    # The encrypted token is deferred: decrypting it costs time on the hot path and nobody there needs it.
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    digest = webhook_token_digest(token)
    recorder = Recorder.objects.defer("webhook_token").filter(webhook_token_hash=digest).first()
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


def trader_overrides(trader: Trader) -> dict:
    """Return the trader's overrides under the recorder API's names (None or "" for not overridden)."""
    overrides = {name: getattr(trader, name) for name in (*RISK_SETTING_FIELDS, *PLAN_SETTING_FIELDS)}
    overrides["tp_targets"] = _targets(trader) if trader.tp_targets_overridden else None
    return overrides


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
