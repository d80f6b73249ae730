"""The sweeper: re-queue what a lost message or a dead worker left behind."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Min, Q, QuerySet
from django.utils import timezone

from trading.models import (
    Decision,
    Order,
    Signal,
)
from trading.services import queue

logger = logging.getLogger(__name__)


# A queue message normally arrives within milliseconds: a row pending this long lost its message.
SWEEP_PENDING_AFTER = timedelta(seconds=10)
SETTLE_UNKNOWN_AFTER = timedelta(seconds=30)
SWEEP_BATCH = 500


@dataclass(frozen=True)
class SweepReport:
    """What one sweep re-queued."""

    signals: int
    decisions: int
    orders_to_settle: int


def recorder_heads(signals: QuerySet) -> list[int]:
    """The oldest of `signals` for each recorder, oldest first."""
    return list(
        signals.values("recorder_id").annotate(head=Min("pk")).order_by("head").values_list("head", flat=True)
    )


def signals_sweep(*, now: datetime | None = None, batch: int = SWEEP_BATCH) -> SweepReport:
    """Re-queue signals and decisions a lost message or a dead worker left behind; settle unknown orders."""
    now = now or timezone.now()
    old = now - SWEEP_PENDING_AFTER
    # One message per recorder: its task works through the recorder's backlog in order.
    signal_ids = recorder_heads(
        Signal.objects.filter(
            Q(status=Signal.Status.PENDING, received_at__lt=old)
            | Q(status=Signal.Status.PROCESSING, lease_expires_at__lt=now)
        )
    )[:batch]
    decision_ids = list(
        Decision.objects.filter(
            Q(status=Decision.Status.PENDING, created_at__lt=old)
            | Q(status=Decision.Status.EXECUTING, lease_expires_at__lt=now)
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:batch]
    )
    order_ids = list(
        Order.objects.filter(status=Order.Status.UNKNOWN, updated_at__lt=now - SETTLE_UNKNOWN_AFTER)
        .order_by("updated_at")
        .values_list("pk", flat=True)[:batch]
    )
    for signal_id in signal_ids:
        queue.task_publish(queue.SIGNAL_PROCESS, signal_id)
    for decision_id in decision_ids:
        queue.task_publish(queue.TRADER_SIGNAL_EXECUTE, decision_id)
    for order_id in order_ids:
        queue.task_publish(queue.ORDER_SETTLE, order_id)
    if signal_ids or decision_ids or order_ids:
        logger.info(
            "Sweep re-queued %d signal(s), %d decision(s) and %d unknown order(s)",
            len(signal_ids),
            len(decision_ids),
            len(order_ids),
        )
    return SweepReport(len(signal_ids), len(decision_ids), len(order_ids))


def signals_requeue(*, signal_ids: Iterable[int]) -> int:
    """Queue unfinished signals again (an operator's nudge), leaving finished ones alone; return the count."""
    unfinished = list(
        Signal.objects.filter(
            pk__in=list(signal_ids), status__in=(Signal.Status.PENDING, Signal.Status.PROCESSING)
        ).values_list("pk", flat=True)
    )
    for signal_id in unfinished:
        queue.task_publish(queue.SIGNAL_PROCESS, signal_id)
    return len(unfinished)
