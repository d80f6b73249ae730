"""What a reconciliation run did: its steps, its report, and the log that stores them as it goes."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from trading.models import (
    BrokerAccount,
    Order,
    ReconcileAction,
    ReconcileRun,
)

logger = logging.getLogger(__name__)


# An order may still be on its way to the broker's lists this long after its outcome became unknown.
UNKNOWN_GRACE = timedelta(seconds=30)
# Longer than a task may run (CELERY_TASK_TIME_LIMIT): a killed run's lock lapses before the next would wait.
LOCK_SECONDS = 300
# After the broker refused a re-placed order (or a flatten), wait before trying again: the same request would
# most likely be refused again, and every refusal counts against the account's request limits.
REPLACE_BACKOFF = timedelta(minutes=10)
FLATTEN_BACKOFF = timedelta(minutes=10)
RUN_RETENTION = timedelta(days=90)
STOP_TYPES = frozenset({"Stop", "TrailingStop", "StopLimit", "TrailingStopLimit"})
LOST_STATUSES = (Order.Status.CANCELLED, Order.Status.REJECTED, Order.Status.FAILED)
IN_FLIGHT_STATUSES = (Order.Status.PENDING, Order.Status.SUBMITTING, Order.Status.UNKNOWN)
# The text account_sync gives the protective orders it cancels (flat position, OCO partner filled).

Kind = ReconcileAction.Kind


@dataclass(frozen=True)
class ReconcileStep:
    """One action a reconciliation took (or, in a dry run, would take) and why."""

    kind: str
    reason: str
    account_id: str = ""
    symbol: str = ""
    order_id: int | None = None


@dataclass
class ReconcileReport:
    """What one reconciliation of one account did; `notes` say what was looked at and left alone, and why."""

    account_pk: int
    account_name: str
    dry_run: bool = False
    steps: list[ReconcileStep] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str = ""
    run_id: int | None = None

    @property
    def ok(self) -> bool:
        """Whether the account was reconciled completely."""
        return not self.error

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (the Celery task's result)."""
        return {
            "account": self.account_pk,
            "ok": self.ok,
            "dry_run": self.dry_run,
            "actions": [step.kind for step in self.steps],
            "error": self.error,
            "run": self.run_id,
        }


class ReconcileLog:
    """Collects a run's steps; outside a dry run each is stored at once (the run row with the first)."""

    def __init__(self, account: BrokerAccount, *, trigger: str, dry_run: bool, started_at: datetime) -> None:
        self.account = account
        self.trigger = trigger
        self.dry_run = dry_run
        self.started_at = started_at
        self.report = ReconcileReport(account.pk, account.name, dry_run)
        self._run: ReconcileRun | None = None

    def step(
        self, kind: str, reason: str, *, account_id: str = "", symbol: str = "", order: Order | None = None
    ) -> None:
        self.report.steps.append(
            ReconcileStep(kind, reason, account_id, symbol, order.pk if order is not None else None)
        )
        if self.dry_run:
            return
        ReconcileAction.objects.create(
            run=self._stored_run(),
            broker_account=self.account,
            kind=kind,
            account_id=account_id,
            symbol=symbol,
            order=order,
            reason=reason,
        )
        logger.info("Reconciliation of account %s: %s %s %s", self.account.pk, kind, account_id, symbol)

    def note(self, text: str) -> None:
        self.report.notes.append(text)

    def finish(self, *, error: str = "", store: bool = True) -> ReconcileReport:
        self.report.error = error
        if self.dry_run or not store:
            return self.report
        if error and self._run is None:
            self._stored_run()
        if self._run is not None:
            self._run.status = ReconcileRun.Status.FAILED if error else ReconcileRun.Status.SUCCEEDED
            self._run.error = error
            self._run.actions_count = len(self.report.steps)
            self._run.finished_at = timezone.now()
            self._run.save(update_fields=["status", "error", "actions_count", "finished_at"])
            self.report.run_id = self._run.pk
        return self.report

    def _stored_run(self) -> ReconcileRun:
        if self._run is None:
            self._run = ReconcileRun.objects.create(
                broker_account=self.account, trigger=self.trigger, started_at=self.started_at
            )
        return self._run


def order_describe(order: Order) -> str:
    """`Sell 1 ES limit at 5002`, `Sell 1 ES trailing stop at 4998 (2 behind)`."""
    text = f"{order.action} {order.quantity} {order.symbol} {order.get_order_type_display().lower()}"
    at = order.price if order.order_type == Order.Type.LIMIT else order.stop_price
    if at is not None:
        text += f" at {at.normalize():f}"
    if order.trail_distance is not None:
        text += f" ({order.trail_distance.normalize():f} behind)"
    return text
