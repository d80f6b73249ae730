"""Signals: accept an alert, run its recorder (in arrival order) and judge each signal into decisions."""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from trading import caches
from trading.claims import CATCH_UP_SECONDS, row_claim, run_in_order
from trading.errors import WaitForEarlier
from trading.models import (
    Decision,
    KillSwitch,
    Recorder,
    Signal,
)
from trading.selectors import (
    traders_for_recorder,
)
from trading.services import queue
from trading.services.contracts import contract_root
from trading.services.decisions import PRICED_SIGNAL, risk_signal, signal_staleness
from trading.services.fanout import decisions_execute
from trading.services.killswitches import blocking_reason, engaged_switches
from trading.services.prices import price_record
from trading.services.recorders import recorder_signal_evaluate
from trading.symbols import SymbolError

logger = logging.getLogger(__name__)


# Leases are short so that a dead worker's claim lapses well inside a recorder's maximum signal age (60 s by
# default): the sweeper then hands the work to another worker while the alert may still be traded. Judging a
# signal talks to no broker and takes far less; a decision renews its lease before every broker call (a call
# is bounded by the adapter's timeouts), so a live worker keeps its claim.
SIGNAL_LEASE = timedelta(seconds=30)

UNFINISHED_SIGNAL = (Signal.Status.PENDING, Signal.Status.PROCESSING)


@dataclass(frozen=True)
class IncomingAlert:
    """An alert as the webhook received and read it; `rejection` is set when it could not be used."""

    raw_body: str
    content_type: str
    source_ip: str | None
    received_at: datetime
    fields: dict[str, Any] = field(default_factory=dict)
    rejection: str | None = None
    fingerprint: str | None = None
    action: str = ""
    ticker: str | None = None
    quantity: Decimal | None = None
    price: Decimal | None = None
    market_position: str | None = None
    position_size: Decimal | None = None
    alert_id: str | None = None
    fire_time: datetime | None = None
    comment: str | None = None


Outcome = Literal["accepted", "duplicate", "rejected", "ignored"]


@dataclass(frozen=True)
class SignalAcceptance:
    """What became of an alert: stored (accepted, rejected, ignored) or a duplicate of `signal_id`."""

    outcome: Outcome
    signal_id: int
    reason: str = ""


def _ticker_problem(recorder_symbol: str, ticker: str | None) -> str | None:
    """Return why the alert's symbol does not fit the recorder's contract; None when it fits or is absent."""
    if not ticker:
        return None
    try:
        expected = contract_root(recorder_symbol)
    except SymbolError:
        return f"This recorder's symbol {recorder_symbol!r} is not a known contract: fix it on its page."
    try:
        sent = contract_root(ticker)
    except SymbolError as error:
        return str(error)
    if sent != expected:
        return (
            f"The alert is for {sent} ({ticker}) but this recorder trades {expected}: send the alert from a "
            f"{expected} chart or use another recorder's webhook."
        )
    return None


def signal_accept(
    *, recorder: Recorder, alert: IncomingAlert, dedup_seconds: float | None = None
) -> SignalAcceptance:
    """Store an incoming alert for `recorder` (or recognise a duplicate) and queue it on commit.

    `recorder` needs only id, owner_id, symbol and enabled loaded. Duplicates: the same `alert_id` for the
    recorder ever, or the same body within `dedup_seconds` (WEBHOOK_DEDUP_SECONDS). Both are enforced by
    unique constraints, so two copies racing each other still yield one signal.
    """
    window = settings.WEBHOOK_DEDUP_SECONDS if dedup_seconds is None else dedup_seconds
    signal = Signal(
        recorder_id=recorder.pk,
        received_at=alert.received_at,
        source_ip=alert.source_ip,
        content_type=alert.content_type[:100],
        raw_body=alert.raw_body,
        fields=alert.fields,
    )
    reason = alert.rejection if alert.rejection else _ticker_problem(recorder.symbol, alert.ticker)
    if reason is not None:
        signal.status = Signal.Status.REJECTED
        signal.reason = reason
        signal.processed_at = alert.received_at
        _copy_alert(signal, alert)
        signal.alert_id = None  # a rejected body never blocks a corrected one with the same id
        signal.save(force_insert=True)
        return SignalAcceptance("rejected", signal.pk, reason)

    _copy_alert(signal, alert)
    if not recorder.enabled:
        signal.status = Signal.Status.IGNORED
        signal.reason = "The recorder is switched off: the alert is stored and nothing is traded."
        signal.processed_at = alert.received_at
    if alert.fingerprint and window > 0:
        signal.fingerprint = alert.fingerprint
        signal.dedup_bucket = int(alert.received_at.timestamp() // window)
        if not alert.alert_id:
            # The bucket's unique constraint catches a copy in this bucket; this read, one just before it.
            first = body_duplicate_find(
                recorder.pk, alert.fingerprint, signal.dedup_bucket, alert.received_at, window
            )
            if first is not None:
                return SignalAcceptance("duplicate", first)
    try:
        # In autocommit the lone INSERT commits by itself: no BEGIN and COMMIT round trips on the hot path.
        # Inside a caller's transaction, a savepoint keeps a duplicate's IntegrityError from spoiling it.
        with nullcontext() if transaction.get_autocommit() else transaction.atomic():
            signal.save(force_insert=True)
            if signal.status == Signal.Status.PENDING:
                transaction.on_commit(lambda: queue.recorder_wake(recorder.pk, signal.pk))
    except IntegrityError:
        first = None
        if alert.alert_id:
            first = (
                Signal.objects.filter(recorder_id=recorder.pk, alert_id=alert.alert_id)
                .values_list("pk", flat=True)
                .first()
            )
        if first is None and signal.fingerprint:
            first = body_duplicate_find(
                recorder.pk, signal.fingerprint, signal.dedup_bucket, alert.received_at, window
            )
        if first is None:
            raise
        return SignalAcceptance("duplicate", first)
    if signal.status == Signal.Status.IGNORED:
        return SignalAcceptance("ignored", signal.pk, signal.reason)
    return SignalAcceptance("accepted", signal.pk)


def _copy_alert(signal: Signal, alert: IncomingAlert) -> None:
    signal.action = alert.action or ""
    signal.ticker = alert.ticker or ""
    signal.quantity = alert.quantity
    signal.price = alert.price
    signal.market_position = alert.market_position or ""
    signal.position_size = alert.position_size
    signal.alert_id = alert.alert_id or None
    signal.fire_time = alert.fire_time
    signal.comment = alert.comment or ""


def body_duplicate_find(
    recorder_id: int, fingerprint: str, bucket: int | None, at: datetime, window: float
) -> int | None:
    if bucket is None:
        return None
    return (
        Signal.objects.filter(
            recorder_id=recorder_id,
            fingerprint=fingerprint,
            dedup_bucket__in=(bucket - 1, bucket),
            received_at__gt=at - timedelta(seconds=window),
        )
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )


def signal_process(*, signal_id: int, now: datetime | None = None) -> str:
    """Run the recorder of a stored signal: its signals in arrival order, each judged and its orders sent.

    The recorder's runner (see `queue`): it works through every unfinished signal of the recorder, this one
    and those before and after it, executes each signal's decisions before the next signal (so a trader's
    position moves in the order of its alerts), gives the runner key back and looks once more. When another
    live worker holds an earlier signal it stops at once: that worker drains this one too. Returns this
    signal's status ("not-claimed" when another worker held or finished it).
    """
    row = Signal.objects.filter(pk=signal_id).values("recorder_id").first()
    if row is None:
        return "not-claimed"
    recorder_id = row["recorder_id"]
    backlog = Signal.objects.filter(recorder_id=recorder_id, status__in=UNFINISHED_SIGNAL).order_by("pk")

    def run_one(head: int, moment: datetime) -> str:
        result = _signal_process_one(head, moment)
        queue.runner_renew(recorder_id)
        return result

    pending = backlog.filter(status=Signal.Status.PENDING)
    started = time.monotonic()
    own: str | None = None
    while True:
        try:
            result = run_in_order(
                signal_id,
                backlog,
                run_one,
                now,
                what="signal",
                hand_off=lambda head: queue.task_publish(queue.SIGNAL_PROCESS, head),
            )
        except WaitForEarlier:
            return own or "waiting"  # the worker holding the earlier signal goes on to this one
        own = result if own is None else own
        queue.runner_release(recorder_id)
        # An alert that found the key taken was committed before it was given back: this look finds it.
        head = pending.values_list("pk", flat=True).first()
        if head is None or not queue.runner_claim(recorder_id):
            return own
        if time.monotonic() - started > CATCH_UP_SECONDS:
            queue.task_publish(queue.SIGNAL_PROCESS, head)  # a fresh task, inside the time limit
            return own
        signal_id = head


def _signal_process_one(signal_id: int, now: datetime) -> str:
    """Claim one signal with a lease and judge it; "not-claimed" when someone else holds it or it is done."""
    caches.refresh()
    token = row_claim(
        Signal.objects.filter(pk=signal_id),
        now,
        Signal.Status.PENDING,
        Signal.Status.PROCESSING,
        SIGNAL_LEASE,
    )
    if token is None:
        return "not-claimed"
    try:
        with transaction.atomic():
            signal = (
                Signal.objects.select_for_update(of=("self",))
                .select_related("recorder")
                .filter(pk=signal_id, claim_token=token, status=Signal.Status.PROCESSING)
                .first()
            )
            if signal is None:
                return "not-claimed"
            decision_ids = _signal_judge(signal, now)
            signal.claim_token = None
            signal.lease_expires_at = None
            signal.processed_at = timezone.now()
            signal.save(
                update_fields=[
                    "status",
                    "reason",
                    "move",
                    "recorder_position_before",
                    "recorder_position_after",
                    "claim_token",
                    "lease_expires_at",
                    "processed_at",
                ]
            )
    except (DatabaseError, SoftTimeLimitExceeded):
        # The lease runs out and the sweeper re-queues the signal once the database answers again.
        raise
    except Exception as error:
        logger.exception("Signal %s failed", signal_id)
        Signal.objects.filter(pk=signal_id, claim_token=token).update(
            status=Signal.Status.FAILED,
            reason=f"Internal error while processing the signal ({error.__class__.__name__}: {error}).",
            claim_token=None,
            lease_expires_at=None,
            processed_at=timezone.now(),
        )
        return Signal.Status.FAILED
    if signal.price is not None and signal.status in PRICED_SIGNAL:
        try:
            price_record(
                owner=signal.recorder.owner_id,
                symbol=signal.recorder.symbol,
                price=signal.price,
                source=f"signal:{signal.pk}",
            )
        except Exception:
            # The signal is done and its traders queued; a price missed here is only a later fill's.
            logger.warning("Signal %s: its price could not be recorded", signal.pk, exc_info=True)
    decisions_execute(decision_ids=decision_ids)
    return signal.status


def _signal_judge(signal: Signal, now: datetime) -> list[int]:
    """Decide the signal's status under its row lock; return its traders' pending decisions to execute."""
    recorder = signal.recorder
    stale = signal_staleness(signal, recorder.max_signal_age, now)
    if stale:
        signal.status, signal.reason = Signal.Status.STALE, stale
        return []
    if not recorder.enabled:
        signal.status = Signal.Status.IGNORED
        signal.reason = "The recorder was switched off before the signal was processed: nothing is traded."
        return []
    engaged = engaged_switches(user_id=recorder.owner_id)
    blocked = blocking_reason(engaged)
    if KillSwitch.Scope.GLOBAL in engaged:
        signal.status, signal.reason = Signal.Status.BLOCKED, blocked or ""
        return []
    if blocked:
        # The owner's own switch: their recorder stops; traders of other users on a public recorder go on.
        signal.status, signal.reason = Signal.Status.BLOCKED, blocked
    else:
        verdict = recorder_signal_evaluate(
            recorder=recorder, signal=risk_signal(signal), source_key=f"signal:{signal.pk}"
        )
        signal.move = verdict.move.value if verdict.move else ""
        signal.recorder_position_before = verdict.position_before
        signal.recorder_position_after = verdict.position_after
        if verdict.allowed:
            signal.status, signal.reason = Signal.Status.PROCESSED, "; ".join(verdict.notes)
        else:
            signal.status, signal.reason = Signal.Status.REFUSED, verdict.reason
    # Traders judge with their own filters and positions: a recorder refusal (its book, its counters) does not
    # decide for an account that may hold a position the recorder's virtual book does not.
    trader_ids = list(traders_for_recorder(recorder).values_list("pk", flat=True))
    if not trader_ids:
        return []
    Decision.objects.bulk_create(
        [Decision(signal=signal, trader_id=trader_id) for trader_id in trader_ids], ignore_conflicts=True
    )
    return list(
        Decision.objects.filter(signal=signal, status=Decision.Status.PENDING)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
