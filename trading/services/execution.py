"""Executing a trader's decision: judge every sub-account, plan and store its orders, then send them."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError, transaction
from django.db.models import Sum
from django.utils import timezone

from trading import plans, risk
from trading.brokers import registry
from trading.brokers.base import (
    BrokerError,
    BrokerNeedsAttention,
    BrokerUnavailable,
)
from trading.claims import row_claim, run_in_order
from trading.errors import LeaseLost, RetryLater
from trading.models import (
    BrokerAccount,
    Decision,
    Fill,
    Order,
    TraderState,
    TraderSubAccount,
)
from trading.selectors import (
    contract_for_symbol,
    recorder_plan_settings,
    recorder_risk_settings,
    trader_can_follow,
)
from trading.services.decisions import (
    DECISION_LEASE,
    PRICED_SIGNAL,
    UNFINISHED_DECISION,
    decision_close,
    decision_fail,
    decision_finish,
    decision_lease_renew,
    risk_signal,
    signal_staleness,
)
from trading.services.killswitches import killswitch_reason
from trading.services.orders import (
    account_mark_needs_attention,
    broker_position,
    new_client_id,
    order_group_submit,
    order_settle,
)
from trading.services.prices import last_price, price_record
from trading.services.sync import account_sync
from trading.symbols import SymbolError

logger = logging.getLogger(__name__)


# Backoff for a broker that is unavailable, in seconds per retry; the signal turns stale long before the end.
RETRY_BACKOFF = (2, 4, 8, 15, 30, 60)


def trader_signal_execute(*, decision_id: int, now: datetime | None = None) -> str:
    """Plan one trader's decision on a signal (first run only) and send its orders.

    A trader's decisions run in the order of their signals: earlier unfinished ones are executed first, by
    this call; WaitForEarlier when a live worker holds one. Raises RetryLater when the broker is unavailable;
    nothing unsent is lost, the retry continues where this run stopped. Returns the decision's status
    ("not-claimed" when another worker holds it or it is done).
    """
    row = Decision.objects.filter(pk=decision_id).values("trader_id").first()
    if row is None:
        return "not-claimed"
    backlog = Decision.objects.filter(trader_id=row["trader_id"], status__in=UNFINISHED_DECISION).order_by(
        "pk"
    )
    return run_in_order(decision_id, backlog, _decision_execute_one, now, what="decision")


def _decision_execute_one(decision_id: int, now: datetime) -> str:
    """Claim one decision with a lease, plan it on its first run and send its orders."""
    token = row_claim(
        Decision.objects.filter(pk=decision_id),
        now,
        Decision.Status.PENDING,
        Decision.Status.EXECUTING,
        DECISION_LEASE,
    )
    if token is None:
        return "not-claimed"
    decision = Decision.objects.select_related(
        "signal", "trader", "trader__account", "trader__recorder", "trader__account__owner"
    ).get(pk=decision_id)
    try:
        if decision.decided_at is None and not decision_plan(decision, token, now):
            return decision.status
        return decision_submit(decision, token)
    except LeaseLost:
        # The other worker goes on from the orders' own claims; nothing of ours is left half-done.
        logger.warning("Decision %s: the lease lapsed and another worker took it over", decision_id)
        return "not-claimed"
    except RetryLater:
        # Let the retry (or the sweeper) claim it again at once.
        Decision.objects.filter(pk=decision_id, claim_token=token).update(
            claim_token=None, lease_expires_at=now
        )
        raise
    except (DatabaseError, SoftTimeLimitExceeded):
        raise
    except Exception as error:
        logger.exception("Decision %s failed", decision_id)
        decision_fail(
            decision, token, f"Internal error while executing ({error.__class__.__name__}: {error})."
        )
        return Decision.Status.FAILED


@dataclass
class _AccountOutcome:
    link: TraderSubAccount
    verdict: risk.Verdict | None
    plan: plans.OrderPlan | None
    reason: str = ""
    position_before: int = 0

    def as_detail(self) -> dict[str, Any]:
        subaccount = self.link.subaccount
        verdict = self.verdict
        return {
            "account_id": subaccount.broker_id,
            "account_name": subaccount.name,
            "multiplier": self.link.multiplier,
            "allowed": bool(verdict and verdict.allowed and self.plan is not None),
            "reason": self.reason,
            "move": verdict.move.value if verdict and verdict.move else "",
            "quantity": verdict.quantity if verdict and verdict.allowed else 0,
            "position_before": self.position_before,
            "position_after": verdict.position_after if verdict and verdict.allowed else self.position_before,
            "notes": [*(verdict.notes if verdict else ()), *(self.plan.notes if self.plan else ())],
            "cancel_working": bool(self.plan and self.plan.cancel_working_orders),
        }


def decision_plan(decision: Decision, token: uuid.UUID, now: datetime) -> bool:
    """Judge the signal for every sub-account and store the orders; False when the decision ended here."""
    signal, trader = decision.signal, decision.trader
    account, recorder = trader.account, trader.recorder

    stale = signal_staleness(signal, recorder.max_signal_age, now)
    if stale:
        decision_close(decision, token, Decision.Status.STALE, stale)
        return False
    if not trader.enabled or not trader_can_follow(trader):
        why = (
            "The trader is switched off."
            if not trader.enabled
            else "The recorder is private: only its owner can follow it."
        )
        decision_close(decision, token, Decision.Status.REFUSED, why)
        return False
    blocked = killswitch_reason(user_id=account.owner_id, account_id=account.pk)
    if blocked:
        decision_close(decision, token, Decision.Status.BLOCKED, blocked)
        return False
    links = list(
        TraderSubAccount.objects.filter(trader=trader, subaccount__active=True)
        .select_related("subaccount")
        .order_by("subaccount__name", "pk")
    )
    if not links:
        decision_close(
            decision,
            token,
            Decision.Status.FAILED,
            "The trader has no active sub-account: choose one on the trader page.",
        )
        return False
    try:
        contract = contract_for_symbol(recorder.symbol)
        settings_ = recorder_risk_settings(recorder, trader)
        plan_settings = recorder_plan_settings(recorder, trader)
    except (SymbolError, ValueError) as error:
        decision_close(
            decision, token, Decision.Status.FAILED, f"The trader's settings cannot be used: {error}"
        )
        return False
    root = contract.root
    # The signal's price is the market for this user now: resting paper orders it crosses fill first. The
    # recorder's runner recorded it already for the recorder's owner; a follower of a public recorder not.
    recorded = account.owner_id == recorder.owner_id and signal.status in PRICED_SIGNAL
    if signal.price is not None and not recorded:
        price_record(owner=account.owner_id, symbol=root, price=signal.price, source=f"signal:{signal.pk}")
    decision_lease_renew(decision.pk, token)
    try:
        broker = registry.broker_for_account(account)
        positions = {
            link.subaccount.broker_id: broker_position(broker, link.subaccount.broker_id, root)
            for link in links
        }
    except BrokerUnavailable as error:
        raise RetryLater(error.message, countdown=error.retry_after) from None
    except BrokerNeedsAttention as error:
        if not account.needs_attention:
            account_mark_needs_attention(account.pk, error)
        decision_close(decision, token, Decision.Status.FAILED, error.message)
        return False
    except BrokerError as error:
        decision_close(
            decision,
            token,
            Decision.Status.FAILED,
            f"The broker could not list the positions: {error.message}",
        )
        return False
    entry_price = signal.price or last_price(owner_id=account.owner_id, symbol=root)

    with transaction.atomic():
        locked = (
            Decision.objects.select_for_update()
            .filter(pk=decision.pk, claim_token=token, decided_at=None)
            .first()
        )
        if locked is None:
            return False
        TraderState.objects.get_or_create(trader=trader)
        state_row = TraderState.objects.select_for_update().get(trader=trader)
        key = risk.session_key(signal.received_at)
        state = risk.RiskState(
            last_signal_at=state_row.last_signal_at,
            signals_this_session=state_row.signals_this_session if state_row.session == key else 0,
            realized_pnl_session=_trader_session_pnl(trader.pk, key),
            signal_count=state_row.signal_count,
            session=key,
        )
        incoming = risk_signal(signal)
        outcomes: list[_AccountOutcome] = []
        for link in links:
            quantity, avg_price = positions[link.subaccount.broker_id]
            outcomes.append(
                _judge_account(
                    incoming,
                    settings_,
                    plan_settings,
                    contract,
                    state,
                    link,
                    quantity,
                    avg_price,
                    entry_price,
                )
            )
        first = outcomes[0].verdict
        if first is not None:
            stored = first.state
            state_row.last_signal_at = stored.last_signal_at
            state_row.signals_this_session = stored.signals_this_session
            state_row.signal_count = stored.signal_count
            state_row.session = stored.session
            state_row.save()
        orders = _create_orders(decision, outcomes, symbol=recorder.symbol, root=root)
        details = [outcome.as_detail() for outcome in outcomes]
        allowed = [
            outcome for outcome in outcomes if outcome.verdict and outcome.verdict.allowed and outcome.plan
        ]
        move = allowed[0].verdict.move.value if allowed and allowed[0].verdict.move else ""  # type: ignore[union-attr]
        quantity = sum(outcome.verdict.quantity for outcome in allowed)  # type: ignore[union-attr]
        reason = _summary_reason(outcomes)
        if orders:
            Decision.objects.filter(pk=decision.pk).update(
                decided_at=timezone.now(), details=details, move=move, quantity=quantity, reason=reason
            )
            decision.decided_at, decision.details, decision.move, decision.quantity = (
                timezone.now(),
                details,
                move,
                quantity,
            )
            decision.reason = reason
            return True
        if any(outcome.verdict is None for outcome in outcomes):
            status = Decision.Status.FAILED
        elif all(not outcome.verdict.allowed for outcome in outcomes):  # type: ignore[union-attr]
            status = Decision.Status.REFUSED
        else:
            status = Decision.Status.NOTHING
        decision_close(decision, token, status, reason, details=details, move=move, quantity=0)
        return False


def _summary_reason(outcomes: Sequence[_AccountOutcome]) -> str:
    reasons = [(outcome.link.subaccount.name, outcome.reason) for outcome in outcomes if outcome.reason]
    if not reasons:
        return ""
    if len(outcomes) == 1 or len({reason for _, reason in reasons}) == 1:
        return reasons[0][1]
    return " ".join(f"{name}: {reason}" for name, reason in reasons)


def _trader_session_pnl(trader_id: int, key) -> Decimal:
    total = Fill.objects.filter(order__trader_id=trader_id, session=key).aggregate(total=Sum("realized_pnl"))[
        "total"
    ]
    return total or Decimal("0.00")


def _judge_account(
    signal: risk.SignalInput,
    settings_: risk.RiskSettings,
    plan_settings: plans.PlanSettings,
    contract,
    state: risk.RiskState,
    link: TraderSubAccount,
    quantity: int,
    avg_price: Decimal | None,
    entry_price: Decimal | None,
) -> _AccountOutcome:
    """Run the trader's filters and plan for one sub-account."""
    state = risk.RiskState(
        position=quantity,
        last_signal_at=state.last_signal_at,
        signals_this_session=state.signals_this_session,
        realized_pnl_session=state.realized_pnl_session,
        signal_count=state.signal_count,
        session=state.session,
    )
    try:
        verdict = risk.evaluate(signal, settings_, state, multiplier=link.multiplier)
    except ValueError as error:
        return _AccountOutcome(link, None, None, f"The signal cannot be judged: {error}", quantity)
    if not verdict.allowed:
        return _AccountOutcome(link, verdict, None, verdict.reason, quantity)
    try:
        plan = plans.plan_for_verdict(
            verdict,
            contract=contract,
            settings=plan_settings,
            entry_price=entry_price,
            average_price=avg_price,
            multiplier=link.multiplier,
        )
    except ValueError as error:
        if entry_price is None and verdict.entry_quantity:
            reason = (
                f"No price is known for {contract.root}: send the price with the alert "
                '("price": {{close}}) so the entry, take-profit and stop prices can be set.'
            )
        else:
            reason = f"No orders could be planned: {error}"
        return _AccountOutcome(link, None, None, reason, quantity)
    return _AccountOutcome(link, verdict, plan, "; ".join(verdict.notes), quantity)


def _create_orders(
    decision: Decision, outcomes: Sequence[_AccountOutcome], *, symbol: str, root: str
) -> list[Order]:
    """Store every planned order with a fresh client id, before anything is sent."""
    created: list[Order] = []
    trader = decision.trader
    for outcome in outcomes:
        if outcome.plan is None or outcome.verdict is None:
            continue
        subaccount = outcome.link.subaccount
        rows: dict[str, Order] = {}
        for sequence, intent in enumerate(outcome.plan.intents):
            full_exit = (
                intent.role is plans.IntentRole.EXIT and intent.quantity >= abs(outcome.position_before) > 0
            )
            row = Order(
                decision=decision,
                signal_id=decision.signal_id,
                trader=trader,
                broker_account_id=trader.account_id,
                account_id=subaccount.broker_id,
                account_name=subaccount.name,
                symbol=root,
                broker_symbol=symbol,
                client_id=new_client_id(),
                plan_key=intent.key,
                sequence=sequence,
                oco_group=intent.oco,
                # Closing the whole position goes through the broker's liquidation: it closes what is
                # really there and never turns a close into a new position in the other direction.
                via_liquidation=full_exit,
                role=intent.role.value,
                action=intent.action.value,
                order_type=intent.order_type.value,
                quantity=intent.quantity,
                price=intent.price,
                stop_price=intent.stop_price,
                trail_distance=intent.trail_distance,
            )
            bracket = outcome.plan.bracket_of(intent.key)
            if bracket and intent.key != bracket[0]:
                row.bracket_entry = rows[bracket[0]]
            row.save(force_insert=True)
            rows[intent.key] = row
            created.append(row)
    return created


def decision_submit(decision: Decision, token: uuid.UUID) -> str:
    """Send the decision's pending orders, sub-account by sub-account, in plan order; then finish it."""
    trader, signal = decision.trader, decision.signal
    account = trader.account

    def renew() -> None:
        decision_lease_renew(decision.pk, token)

    try:
        broker = registry.broker_for_account(account)
    except BrokerNeedsAttention as error:
        decision_fail(decision, token, error.message)
        return Decision.Status.FAILED
    orders = list(Order.objects.filter(decision=decision).order_by("account_id", "sequence", "pk"))
    # Claimed by a worker that died mid-call: whether the broker got them is unknown until they are settled.
    orphans = [order for order in orders if order.status == Order.Status.SUBMITTING]
    for order in orphans:
        Order.objects.filter(pk=order.pk, status=Order.Status.SUBMITTING).update(
            status=Order.Status.UNKNOWN,
            error="The worker stopped while sending this order: it is looked up at the broker first.",
        )
    for order in orphans:
        renew()
        order_settle(order_id=order.pk, broker=broker)
    if orphans:
        orders = list(Order.objects.filter(decision=decision).order_by("account_id", "sequence", "pk"))
    details = {item.get("account_id"): item for item in decision.details or []}
    now = timezone.now()
    stale = None
    if decision.attempts > 1:
        # A retry: the signal may have aged, and a kill switch turned on while it waited must still stop what
        # would open or grow a position; both leave take-profits, stops and exits to go out. (A first run
        # planned a moment ago, past the same checks.)
        stale = signal_staleness(signal, trader.recorder.max_signal_age, now)
        stale = stale or killswitch_reason(user_id=account.owner_id, account_id=account.pk)

    by_account: dict[str, list[Order]] = {}
    for order in orders:
        by_account.setdefault(order.account_id, []).append(order)
    for account_id, group in by_account.items():
        order_group_submit(
            broker,
            group,
            cancel_working=bool(details.get(account_id, {}).get("cancel_working")),
            stale=stale,
            renew=renew,
        )
    if account.kind == BrokerAccount.Kind.PAPER:
        account_sync(account=account, broker=broker)
    return decision_finish(decision.pk, token)
