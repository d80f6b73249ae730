"""A trader's decision on a signal: staleness, its lease, and how it ends (finished, failed, abandoned)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from trading import risk
from trading.errors import LeaseLost
from trading.models import Decision, Order, Signal

DECISION_LEASE = timedelta(seconds=20)
UNFINISHED_DECISION = (Decision.Status.PENDING, Decision.Status.EXECUTING)
# The runner records a signal's price for its recorder's owner once the recorder judged it so.
PRICED_SIGNAL = (Signal.Status.PROCESSED, Signal.Status.REFUSED)


def decision_lease_renew(decision_id: int, token: uuid.UUID) -> None:
    """Extend this worker's claim before a broker call; LeaseLost when another worker holds it now."""
    renewed = Decision.objects.filter(
        pk=decision_id, claim_token=token, status=Decision.Status.EXECUTING
    ).update(lease_expires_at=timezone.now() + DECISION_LEASE)
    if not renewed:
        raise LeaseLost(f"Decision {decision_id} was claimed by another worker.")


def decision_abandon(*, decision_id: int, reason: str) -> None:
    """Give up on a decision whose broker stayed unavailable: unsent orders are marked not placed."""
    decision = Decision.objects.filter(pk=decision_id).first()
    if decision is None or decision.status not in (Decision.Status.PENDING, Decision.Status.EXECUTING):
        return
    Order.objects.filter(decision_id=decision_id, status=Order.Status.PENDING).update(
        status=Order.Status.FAILED, error=f"Not sent: {reason}", cancel_reason=Order.CancelReason.NOT_SENT
    )
    decision_finish(decision_id, None, fallback_reason=reason)


def decision_fail(decision: Decision, token: uuid.UUID | None, reason: str) -> None:
    Order.objects.filter(decision=decision, status=Order.Status.PENDING).update(
        status=Order.Status.FAILED, error=f"Not sent: {reason}", cancel_reason=Order.CancelReason.NOT_SENT
    )
    claim = Q(claim_token=token) if token is not None else Q()
    Decision.objects.filter(claim, pk=decision.pk).update(
        status=Decision.Status.FAILED,
        reason=reason,
        claim_token=None,
        lease_expires_at=None,
        finished_at=timezone.now(),
    )
    decision.status, decision.reason = Decision.Status.FAILED, reason


def decision_close(decision: Decision, token: uuid.UUID, status: str, reason: str, **extra: Any) -> None:
    now = timezone.now()
    Decision.objects.filter(pk=decision.pk, claim_token=token).update(
        status=status,
        reason=reason,
        claim_token=None,
        lease_expires_at=None,
        decided_at=now,
        finished_at=now,
        **extra,
    )
    decision.status, decision.reason = status, reason


def decision_status_from_orders(statuses: Sequence[str]) -> str:
    if Order.Status.SUBMITTING in statuses:
        return Decision.Status.EXECUTING
    # Before pending: orders left pending behind an entry of unknown outcome wait for order_settle.
    if any(status == Order.Status.UNKNOWN for status in statuses):
        return Decision.Status.UNSETTLED
    if Order.Status.PENDING in statuses:
        return Decision.Status.EXECUTING
    if any(status in (Order.Status.REJECTED, Order.Status.FAILED) for status in statuses):
        return Decision.Status.FAILED
    return Decision.Status.EXECUTED


def decision_finish(decision_id: int, token: uuid.UUID | None, *, fallback_reason: str = "") -> str:
    """Set the decision's status from its orders and release its claim."""
    orders = list(Order.objects.filter(decision_id=decision_id).order_by("sequence", "pk"))
    status = decision_status_from_orders([order.status for order in orders])
    failures = [
        order
        for order in orders
        if order.status in (Order.Status.REJECTED, Order.Status.FAILED, Order.Status.UNKNOWN)
    ]
    reason = ""
    if failures:
        worst = failures[0]
        reason = f"{worst.get_role_display()} {worst.get_status_display().lower()}: {worst.error}".strip()
    reason = reason or fallback_reason
    claim = Q(claim_token=token) if token is not None else Q()
    values: dict[str, Any] = {"status": status, "claim_token": None, "lease_expires_at": None}
    if status != Decision.Status.EXECUTING:
        values["finished_at"] = timezone.now()
    if reason:
        values["reason"] = reason
    Decision.objects.filter(claim, pk=decision_id).update(**values)
    return status


def decision_refresh(decision_id: int) -> None:
    """Recompute a finished decision's status after one of its orders was settled."""
    if Decision.objects.filter(pk=decision_id, status=Decision.Status.UNSETTLED).exists():
        decision_finish(decision_id, None)


def signal_staleness(signal: Signal, max_age_seconds: int, now: datetime) -> str | None:
    """Return why the signal is too old to trade (measured from its alert time when earlier), else None."""
    reference = signal.received_at
    if signal.fire_time is not None and signal.fire_time < reference:
        reference = signal.fire_time
    age = (now - reference).total_seconds()
    if age <= max_age_seconds:
        return None
    since = "the time in the alert" if reference != signal.received_at else "it was received"
    return (
        f"Stale: {int(age)} s passed since {since}, more than this recorder's maximum age of "
        f"{max_age_seconds} s. "
        "After a delay or an outage, old alerts are not traded."
    )


def risk_signal(signal: Signal) -> risk.SignalInput:
    """Return the signal as the risk engine sees it."""
    return risk.SignalInput(
        action=signal.action,
        received_at=signal.received_at,
        quantity=signal.quantity,
        price=signal.price,
        market_position=signal.market_position or None,
        position_size=signal.position_size,
    )
