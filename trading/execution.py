"""Execution services: a stored signal becomes decisions per trader, orders, fills and positions.

The path of one alert:
1. `signal_accept` (called by the webhook) stores the Signal row and queues `signal_process` on commit.
2. `signal_process` claims the signal with a lease, checks staleness and the kill switch, runs the
   recorder's own filters and virtual book, then creates one Decision per enabled trader and queues one task
   for each, so a slow broker account never holds the others back.
3. `trader_signal_execute` claims its decision, reads the broker position of each sub-account, runs the
   trader's filters and order plan, stores every Order with its client id, then claims and sends them one
   by one.
4. `account_sync` brings our orders, fills and positions in line with what the broker reports.

Every step claims its row with a conditional UPDATE before any side effect and finishes with another, so a
task delivered twice, or re-run after its worker died, finds its work claimed or done and places nothing
twice. Signals of one recorder, and decisions of one trader, are acted on in the order they arrived.
`signals_sweep` re-queues what a lost queue message or a dead worker left behind.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import redis
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Exists, F, Min, OuterRef, Q, QuerySet, Sum
from django.utils import timezone

from trading import plans, risk, services
from trading.brokers.base import (
    BracketLeg,
    BracketRequest,
    Broker,
    BrokerError,
    BrokerNeedsAttention,
    BrokerOrder,
    BrokerUnavailable,
    OrderOutcomeUnknown,
    OrderRejected,
    OrderRequest,
)
from trading.brokers.base import OrderStatus as BrokerOrderStatus
from trading.brokers.paper import paper_price_update
from trading.brokers.registry import broker_for_account
from trading.models import BrokerAccount, ContractSpec, Recorder, Trader, TraderSubAccount
from trading.models.execution import (
    Decision,
    Fill,
    KillSwitch,
    LastPrice,
    Order,
    Position,
    Signal,
    TraderState,
)
from trading.selectors import (
    contract_for_symbol,
    recorder_plan_settings,
    recorder_risk_settings,
    trader_can_follow,
    traders_for_recorder,
    webhook_path,
)
from trading.services import broker_account_mark_needs_attention, recorder_signal_evaluate
from trading.symbols import CONTRACTS, SymbolError, symbol_root, to_decimal

logger = logging.getLogger(__name__)

# Leases are short so that a dead worker's claim lapses well inside a recorder's maximum signal age (60 s by
# default): the sweeper then hands the work to another worker while the alert may still be traded. Judging a
# signal talks to no broker and takes far less; a decision renews its lease before every broker call (a call
# is bounded by the adapter's timeouts), so a live worker keeps its claim.
SIGNAL_LEASE = timedelta(seconds=30)
DECISION_LEASE = timedelta(seconds=20)
# A queue message normally arrives within milliseconds: a row pending this long lost its message.
SWEEP_PENDING_AFTER = timedelta(seconds=10)
SETTLE_UNKNOWN_AFTER = timedelta(seconds=30)
SWEEP_BATCH = 500
ROOTS_CACHE_SECONDS = 300.0
MAX_PRICE = Decimal(10) ** 10
# Backoff for a broker that is unavailable, in seconds per retry; the signal turns stale long before the end.
RETRY_BACKOFF = (2, 4, 8, 15, 30, 60)

UNFINISHED_SIGNAL = (Signal.Status.PENDING, Signal.Status.PROCESSING)
UNFINISHED_DECISION = (Decision.Status.PENDING, Decision.Status.EXECUTING)
# How long a task that must wait for an earlier signal (or decision) waits before it looks again, and how long
# one task works through earlier ones before it makes way (well inside CELERY_TASK_SOFT_TIME_LIMIT).
WAIT_FOR_EARLIER_SECONDS = 1.0
CATCH_UP_SECONDS = 60.0
ENTRY_ROLES = (Order.Role.ENTRY, Order.Role.EXIT)
PROTECTIVE_ROLES = (Order.Role.TAKE_PROFIT, Order.Role.STOP_LOSS, Order.Role.AVERAGE_DOWN)
_FINISHED_ORDER = (
    Order.Status.WORKING,
    Order.Status.FILLED,
    Order.Status.CANCELLED,
    Order.Status.REJECTED,
    Order.Status.UNKNOWN,
    Order.Status.FAILED,
)


class RetryLater(Exception):
    """The broker could not be reached; nothing was sent. The task retries after `countdown` seconds."""

    def __init__(self, message: str, *, countdown: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.countdown = countdown


class WaitForEarlier(Exception):
    """An earlier signal of this recorder (or decision of this trader) is unfinished: run this one later.

    Signals are acted on in the order they arrived: a close and the entry after it, handled by two workers in
    the wrong order, would leave the account flat instead of short.
    """


# --- publishing -----------------------------------------------------------------------------------------


def _publish(task_name: str, object_id: int | None, *, countdown: float | None = None) -> None:
    """Send a task message; an outage is logged, not raised: the row is durable and the sweeper re-queues."""
    from trading import tasks  # the tasks module imports this one

    try:
        args = [] if object_id is None else [object_id]
        getattr(tasks, task_name).apply_async(args=args, countdown=countdown)
    except Exception:
        logger.warning(
            "Could not queue %s for %s; the sweeper will re-queue it", task_name, object_id, exc_info=True
        )


def _publish_on_commit(task_name: str, object_ids: Iterable[int]) -> None:
    ids = list(object_ids)
    if ids:
        transaction.on_commit(lambda: [_publish(task_name, object_id) for object_id in ids])


# --- waking the dispatcher -------------------------------------------------------------------------------
#
# A webhook does not send a task message per alert: that cost more than storing the alert. The first alert of
# a short window sends one dispatch at once and one for the window's end; an alert whose window is already
# open (in this process, or in another one through the shared key) sends nothing, because the trailing
# dispatch runs after the window closed, so after that alert was committed. A burst costs two messages per
# window, a lone alert is dispatched at once, and the sweeper still catches whatever a lost message left.

DISPATCH_WINDOW_SECONDS = 0.1
# Covers the clocks of the web process, Redis and the worker drifting apart.
DISPATCH_MARGIN_SECONDS = 0.05
DISPATCH_WINDOW_KEY = "justtrades:signals-dispatch-window"
DISPATCH_EXPIRES_SECONDS = 30.0
_window_ends = 0.0  # monotonic end of the window this process opened
_redis_client = None


def signals_nudge() -> None:
    """Have the pending signals dispatched: at once for the first of a window, and again after it."""
    global _window_ends
    now = time.monotonic()
    if now < _window_ends or not _window_open():
        return  # a dispatch after the window's end is already on its way
    _window_ends = now + DISPATCH_WINDOW_SECONDS
    _publish("signals_dispatch", None)
    _publish("signals_dispatch", None, countdown=DISPATCH_WINDOW_SECONDS + DISPATCH_MARGIN_SECONDS)


def _window_open() -> bool:
    """Open the shared window unless another process holds one; True also when that cannot be told."""
    global _redis_client
    try:
        if settings.REDIS_URL:
            # Redis directly: Django's cache rounds timeouts to whole seconds, and the window is a tenth.
            if _redis_client is None:
                _redis_client = redis.Redis.from_url(settings.REDIS_URL)
            milliseconds = int(DISPATCH_WINDOW_SECONDS * 1000)
            return bool(_redis_client.set(DISPATCH_WINDOW_KEY, b"1", nx=True, px=milliseconds))
        return cache.add(DISPATCH_WINDOW_KEY, 1, DISPATCH_WINDOW_SECONDS)
    except Exception:
        logger.warning("Could not check the dispatch window; dispatching anyway", exc_info=True)
        return True


def _recorder_heads(signals: QuerySet) -> list[int]:
    """The oldest of `signals` for each recorder, oldest first."""
    return list(
        signals.values("recorder_id").annotate(head=Min("pk")).order_by("head").values_list("head", flat=True)
    )


def signals_dispatch() -> int:
    """Queue the oldest pending signal of every recorder that has one; return how many were queued.

    Each task works through its recorder's backlog in order (see _in_order), so one message per recorder
    is enough however many alerts arrived.
    """
    heads = _recorder_heads(Signal.objects.filter(status=Signal.Status.PENDING))
    for signal_id in heads:
        _publish("signal_process", signal_id)
    return len(heads)


# --- contracts ------------------------------------------------------------------------------------------

_roots_cache: tuple[float, frozenset[str]] | None = None


def contract_roots() -> frozenset[str]:
    """Return every known contract root; cached for a few minutes, as ContractSpec rarely changes."""
    global _roots_cache
    now = time.monotonic()
    if _roots_cache is None or now - _roots_cache[0] > ROOTS_CACHE_SECONDS:
        roots = frozenset(ContractSpec.objects.values_list("root", flat=True)) | frozenset(CONTRACTS)
        _roots_cache = (now, roots)
    return _roots_cache[1]


def contract_root(symbol: str) -> str:
    """Return the contract root of a symbol (`CME_MINI:ES1!` -> `ES`); SymbolError when no contract has it."""
    return symbol_root(symbol, contract_roots())


# --- accepting a signal (the webhook's one call) -----------------------------------------------------


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
            first = _body_duplicate(
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
                transaction.on_commit(signals_nudge)
    except IntegrityError:
        first = None
        if alert.alert_id:
            first = (
                Signal.objects.filter(recorder_id=recorder.pk, alert_id=alert.alert_id)
                .values_list("pk", flat=True)
                .first()
            )
        if first is None and signal.fingerprint:
            first = _body_duplicate(
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


def _body_duplicate(
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


# --- kill switches ------------------------------------------------------------------------------------------


def killswitch_set(
    *,
    engaged: bool,
    user=None,
    account: BrokerAccount | None = None,
    changed_by=None,
    reason: str = "",
) -> KillSwitch:
    """Turn a kill switch on or off: global (no user, no account), for one user, or for one broker account."""
    if user is not None and account is not None:
        raise ValueError(
            "A kill switch is global, for one user or for one account: give a user or an account, not both."
        )
    if account is not None:
        scope, target = KillSwitch.Scope.ACCOUNT, {"broker_account": account}
    elif user is not None:
        scope, target = KillSwitch.Scope.USER, {"user": user}
    else:
        scope, target = KillSwitch.Scope.GLOBAL, {}
    values = {"engaged": engaged, "reason": (reason or "")[:200], "changed_by": changed_by}
    with transaction.atomic():
        try:
            with transaction.atomic():
                switch, created = KillSwitch.objects.get_or_create(scope=scope, **target, defaults=values)
        except IntegrityError:
            switch, created = KillSwitch.objects.get(scope=scope, **target), False
        if not created:
            for name, value in values.items():
                setattr(switch, name, value)
            switch.save()
    logger.warning(
        "Kill switch %s (%s) turned %s by user %s",
        switch.pk,
        scope,
        "on" if engaged else "off",
        getattr(changed_by, "pk", None),
    )
    return switch


def _engaged_switches(*, user_id: int | None = None, account_id: int | None = None) -> dict[str, str]:
    """Return {scope: reason} of the switches that are on for everyone, this user or this account."""
    scopes = Q(scope=KillSwitch.Scope.GLOBAL)
    if user_id is not None:
        scopes |= Q(scope=KillSwitch.Scope.USER, user_id=user_id)
    if account_id is not None:
        scopes |= Q(scope=KillSwitch.Scope.ACCOUNT, broker_account_id=account_id)
    return dict(KillSwitch.objects.filter(scopes, engaged=True).values_list("scope", "reason"))


def _blocking_reason(engaged: dict[str, str]) -> str | None:
    for scope, label in (
        (KillSwitch.Scope.GLOBAL, "The global kill switch is on"),
        (KillSwitch.Scope.USER, "The owner's kill switch is on"),
        (KillSwitch.Scope.ACCOUNT, "The kill switch of this broker account is on"),
    ):
        if scope in engaged:
            why = f" ({engaged[scope]})" if engaged[scope] else ""
            return f"{label}{why}: the signal is stored and no order is sent."
    return None


def killswitch_reason(*, user_id: int | None = None, account_id: int | None = None) -> str | None:
    """Return why orders are blocked for this user or account (the broadest switch that is on), else None."""
    return _blocking_reason(_engaged_switches(user_id=user_id, account_id=account_id))


# --- prices -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PriceUpdate:
    """A price stored for a user, and the paper accounts whose resting orders it filled."""

    symbol: str
    price: Decimal
    filled_accounts: list[int]


def price_record(*, owner, symbol: str, price: Decimal | int | str, source: str = "api") -> PriceUpdate:
    """Store the last price of a contract for a user and fill their paper orders it crosses.

    Raises ValueError with a sentence for an unknown symbol or a price that is not a positive number.
    """
    try:
        root = contract_root(symbol)
    except SymbolError as error:
        raise ValueError(str(error)) from None
    value = to_decimal(price, name="price")
    if value <= 0 or value >= MAX_PRICE:
        raise ValueError(f"The price must be more than 0 and less than {MAX_PRICE:f}, not {value}.")
    if value.as_tuple().exponent < -8:  # type: ignore[operator]
        value = value.quantize(Decimal("1e-8"))
    owner_id = getattr(owner, "pk", owner)
    LastPrice.objects.update_or_create(
        owner_id=owner_id,
        symbol=root,
        defaults={"price": value, "source": source[:32], "updated_at": timezone.now()},
    )
    touched = paper_price_update(owner_id=owner_id, symbol=root, price=value)
    for account in BrokerAccount.objects.filter(pk__in=touched):
        account_sync(account=account)
    return PriceUpdate(symbol=root, price=value, filled_accounts=touched)


def last_price(*, owner_id: int, symbol: str) -> Decimal | None:
    """Return the user's last known price of a contract root, or None."""
    return LastPrice.objects.filter(owner_id=owner_id, symbol=symbol).values_list("price", flat=True).first()


# --- processing a signal ------------------------------------------------------------------------------------


def _claimable(now: datetime, pending: str, working: str) -> Q:
    return (
        Q(status=pending)
        | Q(status=working, lease_expires_at__lt=now)
        | Q(status=working, lease_expires_at=None)
    )


def _claim(rows: QuerySet, now: datetime, pending: str, working: str, lease: timedelta) -> uuid.UUID | None:
    """Claim a row with a lease by one conditional UPDATE; the token proves the claim (None: not claimed)."""
    token = uuid.uuid4()
    claimed = rows.filter(_claimable(now, pending, working)).update(
        status=working, claim_token=token, lease_expires_at=now + lease, attempts=F("attempts") + 1
    )
    return token if claimed else None


def _staleness(signal: Signal, max_age_seconds: int, now: datetime) -> str | None:
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


def risk_signal(signal: Signal) -> risk.Signal:
    """Return the signal as the risk engine sees it."""
    return risk.Signal(
        action=signal.action,
        received_at=signal.received_at,
        quantity=signal.quantity,
        price=signal.price,
        market_position=signal.market_position or None,
        position_size=signal.position_size,
    )


def signal_process(*, signal_id: int, now: datetime | None = None) -> str:
    """Take a stored signal through staleness, kill switch and the recorder, then fan it out to traders.

    A recorder's signals are acted on in the order they arrived: earlier unfinished ones are processed first,
    by this call. When a live worker holds an earlier one, WaitForEarlier asks to run again shortly. Returns
    the signal's status ("not-claimed" when another worker holds it or it is already done).
    """
    row = Signal.objects.filter(pk=signal_id).values("recorder_id").first()
    if row is None:
        return "not-claimed"
    queue = Signal.objects.filter(recorder_id=row["recorder_id"], status__in=UNFINISHED_SIGNAL).order_by("pk")
    # Signals woken by a dispatch share one message per recorder: the rest of a backlog is handed on.
    return _in_order(
        signal_id,
        queue,
        _signal_process_one,
        now,
        what="signal",
        hand_off=lambda head: _publish("signal_process", head),
    )


def _in_order(
    object_id: int,
    queue: QuerySet,
    run_one,
    now: datetime | None,
    *,
    what: str,
    hand_off: Callable[[int], None] | None = None,
) -> str:
    """Run `object_id` after every earlier unfinished item of its queue; drain later ones while in the lead.

    One task works through a backlog (after an outage, a burst) in order whatever order the messages came in;
    the other tasks find their item done. WaitForEarlier only while a live worker holds an earlier item.
    After a while in the lead it makes way, handing the rest to `hand_off` when items have no message each.
    """
    started = time.monotonic()
    own = "not-claimed"
    while True:
        head = queue.values_list("pk", flat=True).first()
        if head is None:
            return own
        if head > object_id and time.monotonic() - started > CATCH_UP_SECONDS:
            if hand_off is not None:
                hand_off(head)
            return own
        result = run_one(head, now or timezone.now())
        if result == "not-claimed":
            if head < object_id:
                raise WaitForEarlier(f"{what.capitalize()} {object_id} waits for {what} {head} before it.")
            # This item (or a later one) is in another worker's hands; it goes on from there.
            return own
        if head == object_id:
            own = result
        elif head < object_id and time.monotonic() - started > CATCH_UP_SECONDS:
            raise WaitForEarlier(f"{what.capitalize()} {object_id} made way after catching up for a while.")


def _signal_process_one(signal_id: int, now: datetime) -> str:
    """Claim one signal with a lease and judge it; "not-claimed" when someone else holds it or it is done."""
    token = _claim(
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
            _signal_judge(signal, now)
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
    if signal.price is not None and signal.status in (Signal.Status.PROCESSED, Signal.Status.REFUSED):
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
    return signal.status


def _signal_judge(signal: Signal, now: datetime) -> None:
    """Decide the signal's status under its row lock; fan out to traders unless stale or globally blocked."""
    recorder = signal.recorder
    stale = _staleness(signal, recorder.max_signal_age, now)
    if stale:
        signal.status, signal.reason = Signal.Status.STALE, stale
        return
    if not recorder.enabled:
        signal.status = Signal.Status.IGNORED
        signal.reason = "The recorder was switched off before the signal was processed: nothing is traded."
        return
    engaged = _engaged_switches(user_id=recorder.owner_id)
    blocked = _blocking_reason(engaged)
    if KillSwitch.Scope.GLOBAL in engaged:
        signal.status, signal.reason = Signal.Status.BLOCKED, blocked or ""
        return
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
        return
    Decision.objects.bulk_create(
        [Decision(signal=signal, trader_id=trader_id) for trader_id in trader_ids], ignore_conflicts=True
    )
    pending = Decision.objects.filter(signal=signal, status=Decision.Status.PENDING).values_list(
        "pk", flat=True
    )
    _publish_on_commit("trader_signal_execute", pending)


# --- executing one trader's decision ------------------------------------------------------------------------


class LeaseLost(Exception):
    """This worker's claim on a decision lapsed and was taken over: it must stop before any broker call."""


def _lease_renew(decision_id: int, token: uuid.UUID) -> None:
    """Extend this worker's claim before a broker call; LeaseLost when another worker holds it now."""
    renewed = Decision.objects.filter(
        pk=decision_id, claim_token=token, status=Decision.Status.EXECUTING
    ).update(lease_expires_at=timezone.now() + DECISION_LEASE)
    if not renewed:
        raise LeaseLost(f"Decision {decision_id} was claimed by another worker.")


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
    queue = Decision.objects.filter(trader_id=row["trader_id"], status__in=UNFINISHED_DECISION).order_by("pk")
    return _in_order(decision_id, queue, _decision_execute_one, now, what="decision")


def _decision_execute_one(decision_id: int, now: datetime) -> str:
    """Claim one decision with a lease, plan it on its first run and send its orders."""
    token = _claim(
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
        if decision.decided_at is None and not _decision_plan(decision, token, now):
            return decision.status
        return _decision_submit(decision, token)
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
        _decision_fail(
            decision, token, f"Internal error while executing ({error.__class__.__name__}: {error})."
        )
        return Decision.Status.FAILED


def decision_abandon(*, decision_id: int, reason: str) -> None:
    """Give up on a decision whose broker stayed unavailable: unsent orders are marked not placed."""
    decision = Decision.objects.filter(pk=decision_id).first()
    if decision is None or decision.status not in (Decision.Status.PENDING, Decision.Status.EXECUTING):
        return
    Order.objects.filter(decision_id=decision_id, status=Order.Status.PENDING).update(
        status=Order.Status.FAILED, error=f"Not sent: {reason}"
    )
    _decision_finish(decision_id, None, fallback_reason=reason)


def _decision_fail(decision: Decision, token: uuid.UUID | None, reason: str) -> None:
    Order.objects.filter(decision=decision, status=Order.Status.PENDING).update(
        status=Order.Status.FAILED, error=f"Not sent: {reason}"
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


def _decision_close(decision: Decision, token: uuid.UUID, status: str, reason: str, **extra: Any) -> None:
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


@dataclass
class _AccountVerdict:
    link: TraderSubAccount
    decision: risk.Decision | None
    plan: plans.OrderPlan | None
    reason: str = ""
    position_before: int = 0

    def as_detail(self) -> dict[str, Any]:
        subaccount = self.link.subaccount
        decided = self.decision
        return {
            "account_id": subaccount.broker_id,
            "account_name": subaccount.name,
            "multiplier": self.link.multiplier,
            "allowed": bool(decided and decided.allowed and self.plan is not None),
            "reason": self.reason,
            "move": decided.move.value if decided and decided.move else "",
            "quantity": decided.quantity if decided and decided.allowed else 0,
            "position_before": self.position_before,
            "position_after": decided.position_after if decided and decided.allowed else self.position_before,
            "notes": [*(decided.notes if decided else ()), *(self.plan.notes if self.plan else ())],
            "cancel_working": bool(self.plan and self.plan.cancel_working_orders),
        }


def _decision_plan(decision: Decision, token: uuid.UUID, now: datetime) -> bool:
    """Judge the signal for every sub-account and store the orders; False when the decision ended here."""
    signal, trader = decision.signal, decision.trader
    account, recorder = trader.account, trader.recorder

    stale = _staleness(signal, recorder.max_signal_age, now)
    if stale:
        _decision_close(decision, token, Decision.Status.STALE, stale)
        return False
    if not trader.enabled or not trader_can_follow(trader):
        why = (
            "The trader is switched off."
            if not trader.enabled
            else "The recorder is private: only its owner can follow it."
        )
        _decision_close(decision, token, Decision.Status.REFUSED, why)
        return False
    blocked = killswitch_reason(user_id=account.owner_id, account_id=account.pk)
    if blocked:
        _decision_close(decision, token, Decision.Status.BLOCKED, blocked)
        return False
    links = list(
        TraderSubAccount.objects.filter(trader=trader, subaccount__active=True)
        .select_related("subaccount")
        .order_by("subaccount__name", "pk")
    )
    if not links:
        _decision_close(
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
        _decision_close(
            decision, token, Decision.Status.FAILED, f"The trader's settings cannot be used: {error}"
        )
        return False
    root = contract.root
    if signal.price is not None:
        # The signal's price is the market for this user now: resting paper orders it crosses fill first.
        price_record(owner=account.owner_id, symbol=root, price=signal.price, source=f"signal:{signal.pk}")
    _lease_renew(decision.pk, token)
    try:
        broker = broker_for_account(account)
        positions = {
            link.subaccount.broker_id: _broker_position(broker, link.subaccount.broker_id, root)
            for link in links
        }
    except BrokerUnavailable as error:
        raise RetryLater(error.message, countdown=error.retry_after) from None
    except BrokerNeedsAttention as error:
        if not account.needs_attention:
            _mark_needs_attention(account.pk, error)
        _decision_close(decision, token, Decision.Status.FAILED, error.message)
        return False
    except BrokerError as error:
        _decision_close(
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
        verdicts: list[_AccountVerdict] = []
        for link in links:
            quantity, avg_price = positions[link.subaccount.broker_id]
            verdicts.append(
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
        first = verdicts[0].decision
        if first is not None:
            stored = first.state
            state_row.last_signal_at = stored.last_signal_at
            state_row.signals_this_session = stored.signals_this_session
            state_row.signal_count = stored.signal_count
            state_row.session = stored.session
            state_row.save()
        orders = _create_orders(decision, verdicts, symbol=recorder.symbol, root=root)
        details = [verdict.as_detail() for verdict in verdicts]
        allowed = [
            verdict for verdict in verdicts if verdict.decision and verdict.decision.allowed and verdict.plan
        ]
        move = allowed[0].decision.move.value if allowed and allowed[0].decision.move else ""  # type: ignore[union-attr]
        quantity = sum(verdict.decision.quantity for verdict in allowed)  # type: ignore[union-attr]
        reason = _summary_reason(verdicts)
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
        if any(verdict.decision is None for verdict in verdicts):
            status = Decision.Status.FAILED
        elif all(not verdict.decision.allowed for verdict in verdicts):  # type: ignore[union-attr]
            status = Decision.Status.REFUSED
        else:
            status = Decision.Status.NOTHING
        _decision_close(decision, token, status, reason, details=details, move=move, quantity=0)
        return False


def _summary_reason(verdicts: Sequence[_AccountVerdict]) -> str:
    reasons = [(verdict.link.subaccount.name, verdict.reason) for verdict in verdicts if verdict.reason]
    if not reasons:
        return ""
    if len(verdicts) == 1 or len({reason for _, reason in reasons}) == 1:
        return reasons[0][1]
    return " ".join(f"{name}: {reason}" for name, reason in reasons)


def _broker_position(broker: Broker, account_id: str, root: str) -> tuple[int, Decimal | None]:
    quantity, average = 0, None
    for position in broker.list_positions(account_id):
        try:
            held = contract_root(position.symbol)
        except SymbolError:
            continue
        if held == root and position.quantity:
            # Several contract months of one root (around a roll) count as one position.
            if quantity and position.avg_price is not None and average is not None:
                total = quantity + position.quantity
                average = (
                    (average * quantity + position.avg_price * position.quantity) / total if total else None
                )
            else:
                average = position.avg_price
            quantity += position.quantity
    return quantity, average if quantity else None


def _trader_session_pnl(trader_id: int, key) -> Decimal:
    total = Fill.objects.filter(order__trader_id=trader_id, session=key).aggregate(total=Sum("realized_pnl"))[
        "total"
    ]
    return total or Decimal("0.00")


def _judge_account(
    signal: risk.Signal,
    settings_: risk.RiskSettings,
    plan_settings: plans.PlanSettings,
    contract,
    state: risk.RiskState,
    link: TraderSubAccount,
    quantity: int,
    avg_price: Decimal | None,
    entry_price: Decimal | None,
) -> _AccountVerdict:
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
        decided = risk.evaluate(signal, settings_, state, multiplier=link.multiplier)
    except ValueError as error:
        return _AccountVerdict(link, None, None, f"The signal cannot be judged: {error}", quantity)
    if not decided.allowed:
        return _AccountVerdict(link, decided, None, decided.reason, quantity)
    try:
        plan = plans.plan_for_decision(
            decided,
            contract=contract,
            settings=plan_settings,
            entry_price=entry_price,
            average_price=avg_price,
            multiplier=link.multiplier,
        )
    except ValueError as error:
        if entry_price is None and decided.entry_quantity:
            reason = (
                f"No price is known for {contract.root}: send the price with the alert "
                '("price": {{close}}) so the entry, take-profit and stop prices can be set.'
            )
        else:
            reason = f"No orders could be planned: {error}"
        return _AccountVerdict(link, None, None, reason, quantity)
    return _AccountVerdict(link, decided, plan, "; ".join(decided.notes), quantity)


def _new_client_id() -> str:
    return f"jt-{uuid.uuid4().hex}"


def _create_orders(
    decision: Decision, verdicts: Sequence[_AccountVerdict], *, symbol: str, root: str
) -> list[Order]:
    """Store every planned order with a fresh client id, before anything is sent."""
    created: list[Order] = []
    trader = decision.trader
    for verdict in verdicts:
        if verdict.plan is None or verdict.decision is None:
            continue
        subaccount = verdict.link.subaccount
        rows: dict[str, Order] = {}
        for sequence, intent in enumerate(verdict.plan.intents):
            full_exit = (
                intent.role is plans.OrderRole.EXIT and intent.quantity >= abs(verdict.position_before) > 0
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
                client_id=_new_client_id(),
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
            bracket = verdict.plan.bracket_of(intent.key)
            if bracket and intent.key != bracket[0]:
                row.bracket_entry = rows[bracket[0]]
            row.save(force_insert=True)
            rows[intent.key] = row
            created.append(row)
    return created


def _decision_submit(decision: Decision, token: uuid.UUID) -> str:
    """Send the decision's pending orders, sub-account by sub-account, in plan order; then finish it."""
    trader, signal = decision.trader, decision.signal
    account = trader.account

    def renew() -> None:
        _lease_renew(decision.pk, token)

    try:
        broker = broker_for_account(account)
    except BrokerNeedsAttention as error:
        _decision_fail(decision, token, error.message)
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
    orders = list(Order.objects.filter(decision=decision).order_by("account_id", "sequence", "pk"))
    details = {item.get("account_id"): item for item in decision.details or []}
    now = timezone.now()
    stale = _staleness(signal, trader.recorder.max_signal_age, now) if decision.attempts > 1 else None
    # A kill switch turned on after planning (while this decision waited for a retry) must still stop what
    # would open or grow a position; like staleness it leaves take-profits, stops and exits to go out.
    stale = stale or killswitch_reason(user_id=account.owner_id, account_id=account.pk)

    by_account: dict[str, list[Order]] = {}
    for order in orders:
        by_account.setdefault(order.account_id, []).append(order)
    for account_id, group in by_account.items():
        _submit_group(
            broker,
            group,
            cancel_working=bool(details.get(account_id, {}).get("cancel_working")),
            stale=stale,
            renew=renew,
        )
    if account.kind == BrokerAccount.Kind.PAPER:
        account_sync(account=account, broker=broker)
    return _decision_finish(decision.pk, token)


# Copies of protection put back after the order that replaced it was refused sort after the plan's own orders.
RESTORED_SEQUENCE = 10_000
_STOPPING = (Order.Status.REJECTED, Order.Status.FAILED)


def _submit_group(
    broker: Broker,
    group: list[Order],
    *,
    cancel_working: bool,
    stale: str | None,
    renew: Callable[[], None],
) -> None:
    """Send one sub-account's orders in order; a failed entry or exit stops the orders that depend on it."""
    first = group[0]
    for order in group:
        if order.role not in ENTRY_ROLES:
            continue
        if order.status == Order.Status.UNKNOWN:
            # It may have filled: what depends on it stays pending until order_settle looks it up, then
            # either resumes this decision or fails the rest. Failing them now would leave a fill naked.
            return
        if order.status in _STOPPING:
            _group_stop(broker, group, order, renew)
            return
    pending = [
        order for order in group if order.status == Order.Status.PENDING and order.bracket_entry_id is None
    ]
    if not pending:
        return
    liquidates = any(order.via_liquidation for order in pending)
    if cancel_working and not liquidates:
        _cancel_working(broker, first, renew)
    for order in pending:
        order.refresh_from_db()
        if order.status != Order.Status.PENDING:
            continue
        if stale and order.role in (Order.Role.ENTRY, Order.Role.AVERAGE_DOWN):
            _fail_pending([order, *Order.objects.filter(bracket_entry=order)], f"Not sent: {stale}")
            if order.role == Order.Role.ENTRY:
                order.refresh_from_db()
                _group_stop(broker, group, order, renew)
                return
            continue
        renew()
        result = order_submit(order=order, broker=broker, oco_partner=_oco_partner(order, pending))
        if result.role in ENTRY_ROLES and result.status == Order.Status.UNKNOWN:
            return  # as above: settled first
        if result.role in ENTRY_ROLES and result.status in _STOPPING:
            _group_stop(broker, group, result, renew)
            return


def _oco_partner(order: Order, pending: Sequence[Order]) -> Order | None:
    """The other half of a take-profit/stop pair outside the bracket, when both still wait to be sent.

    Sent together as one OCO the broker cancels one the moment the other fills; sent apart, only our sync
    would, and two prices in quick succession could fill both and reverse the position.
    """
    if not order.oco_group or order.role not in (Order.Role.TAKE_PROFIT, Order.Role.STOP_LOSS):
        return None
    for other in pending:
        if (
            other.pk != order.pk
            and other.oco_group == order.oco_group
            and other.role in (Order.Role.TAKE_PROFIT, Order.Role.STOP_LOSS)
            and (other.action, other.quantity) == (order.action, order.quantity)
        ):
            other.refresh_from_db()
            return other if other.status == Order.Status.PENDING else None
    return None


def _group_stop(broker: Broker, group: list[Order], stopper: Order, renew: Callable[[], None]) -> None:
    """The group's entry or exit was not placed: fail what depends on it and put back what it replaced."""
    if stopper.status == Order.Status.FAILED and stopper.error.startswith("Not sent: "):
        reason = "Not sent: its entry was not sent."
    else:
        reason = _not_sent_after(stopper)
    _fail_pending([order for order in group if order.sequence < RESTORED_SEQUENCE], reason)
    _protection_restore(broker, stopper, renew)


def _not_sent_after(order: Order) -> str:
    role, status = order.get_role_display().lower(), order.get_status_display().lower()
    return f"Not sent: the {role} before it was {status}."


def _fail_pending(orders: Iterable[Order], reason: str) -> None:
    ids = [order.pk for order in orders]
    Order.objects.filter(pk__in=ids, status=Order.Status.PENDING).update(
        status=Order.Status.FAILED, error=reason
    )


def _replaced_note(decision_id: int) -> str:
    return f"Cancelled: replaced by the orders of decision {decision_id}."


def _cancel_working(broker: Broker, sample: Order, renew: Callable[[], None]) -> None:
    """Cancel the working exits and average-downs of the position before new ones replace them."""
    working = Order.objects.filter(
        broker_account_id=sample.broker_account_id,
        account_id=sample.account_id,
        symbol=sample.symbol,
        status=Order.Status.WORKING,
        role__in=PROTECTIVE_ROLES,
    ).exclude(decision_id=sample.decision_id)
    for order in working:
        if not order.broker_order_id:
            continue
        renew()
        try:
            broker.cancel_order(order.broker_order_id)
        except BrokerUnavailable as error:
            raise RetryLater(error.message, countdown=error.retry_after) from None
        except OrderRejected as error:
            # Already filled or cancelled at the broker: the next sync records which.
            logger.info("Cancel of order %s refused: %s", order.pk, error.text)
            continue
        except BrokerError as error:
            # The cancel may or may not have reached the broker: placing the new protection now could
            # stack it on the old. Send nothing; the retry cancels again (cancelling twice is harmless).
            logger.warning("Cancel of order %s failed: %s", order.pk, error.message)
            raise RetryLater(
                f"The working order {order.pk} could not be cancelled ({error.message}): "
                "new protection waits until it is."
            ) from None
        # The note names the decision, so its protection can be put back if its entry or exit is refused.
        Order.objects.filter(pk=order.pk, status=Order.Status.WORKING).update(
            status=Order.Status.CANCELLED, error=_replaced_note(sample.decision_id)
        )


def _protection_restore(broker: Broker, stopper: Order, renew: Callable[[], None]) -> None:
    """Send again the take-profits and stops `stopper`'s decision cancelled: its entry or exit was refused.

    The position is what it was before that decision, so the protection it had must be back on the book.
    Copies (new client ids, same prices) belong to that decision; their plan keys name the original, so a
    retry finds them made and sends only what is still pending. Average-downs are not put back: they would
    grow the position, which the refusal (or a kill switch) just said not to do.
    """
    replaced = Order.objects.filter(
        broker_account_id=stopper.broker_account_id,
        account_id=stopper.account_id,
        symbol=stopper.symbol,
        status=Order.Status.CANCELLED,
        role__in=(Order.Role.TAKE_PROFIT, Order.Role.STOP_LOSS),
        error=_replaced_note(stopper.decision_id),
    ).order_by("sequence", "pk")
    for original in replaced:
        try:
            with transaction.atomic():
                Order.objects.create(
                    decision_id=stopper.decision_id,
                    signal_id=stopper.signal_id,
                    trader_id=stopper.trader_id,
                    broker_account_id=original.broker_account_id,
                    account_id=original.account_id,
                    account_name=original.account_name,
                    symbol=original.symbol,
                    broker_symbol=original.broker_symbol,
                    client_id=_new_client_id(),
                    plan_key=f"{original.plan_key[:5]}-r{original.pk}"[:16],
                    sequence=RESTORED_SEQUENCE + original.sequence,
                    # Pairs stay paired (sent as one OCO), in groups apart from this decision's own.
                    oco_group=f"r{original.decision_id}-{original.oco_group}"[:16]
                    if original.oco_group
                    else "",
                    role=original.role,
                    action=original.action,
                    order_type=original.order_type,
                    quantity=original.quantity,
                    price=original.price,
                    stop_price=original.stop_price,
                    trail_distance=original.trail_distance,
                )
        except IntegrityError:
            pass  # made by an earlier run; sent below if still pending
    copies = list(
        Order.objects.filter(
            decision_id=stopper.decision_id,
            account_id=stopper.account_id,
            sequence__gte=RESTORED_SEQUENCE,
            status=Order.Status.PENDING,
        ).order_by("sequence", "pk")
    )
    for copy in copies:
        copy.refresh_from_db()
        if copy.status != Order.Status.PENDING:
            continue  # sent with its OCO partner
        renew()
        order_submit(order=copy, broker=broker, oco_partner=_oco_partner(copy, copies))


def _order_request(order: Order) -> OrderRequest:
    return OrderRequest(
        client_id=order.client_id,
        account_id=order.account_id,
        account_spec=order.account_name or order.account_id,
        symbol=order.broker_symbol or order.symbol,
        action=order.action,  # type: ignore[arg-type]
        order_type=order.order_type,  # type: ignore[arg-type]
        quantity=order.quantity,
        price=order.price,
        stop_price=order.stop_price,
        trail_distance=order.trail_distance,
        time_in_force="Day" if order.role in ENTRY_ROLES else "GTC",
    )


def _bracket_request(entry: Order, legs: Sequence[Order]) -> BracketRequest:
    def leg(order: Order) -> BracketLeg:
        return BracketLeg(
            client_id=order.client_id,
            order_type=order.order_type,  # type: ignore[arg-type]
            price=order.price,
            stop_price=order.stop_price,
            trail_distance=order.trail_distance,
        )

    take_profit = next((leg(order) for order in legs if order.role == Order.Role.TAKE_PROFIT), None)
    stop_loss = next((leg(order) for order in legs if order.role == Order.Role.STOP_LOSS), None)
    return BracketRequest(entry=_order_request(entry), take_profit=take_profit, stop_loss=stop_loss)


def order_submit(*, order: Order, broker: Broker, oco_partner: Order | None = None) -> Order:
    """Claim a pending order (with its bracket legs, or its OCO partner) and send it once; record the answer.

    Raises RetryLater when the broker could not be reached (the order is pending again, certainly not placed).
    """
    legs = [] if oco_partner else list(Order.objects.filter(bracket_entry=order).order_by("sequence"))
    partners = [oco_partner] if oco_partner else legs
    ids = [order.pk, *(other.pk for other in partners)]
    try:
        bracket = _bracket_request(order, legs) if legs else None
        request = _order_request(order)
        other_request = _order_request(oco_partner) if oco_partner else None
    except ValueError as error:
        Order.objects.filter(pk__in=ids, status=Order.Status.PENDING).update(
            status=Order.Status.FAILED, error=f"Not sent: {error}"
        )
        order.refresh_from_db()
        return order
    with transaction.atomic():
        claimed = Order.objects.filter(pk__in=ids, status=Order.Status.PENDING).update(
            status=Order.Status.SUBMITTING, submitted_at=timezone.now()
        )
        if claimed != len(ids):
            transaction.set_rollback(True)
            order.refresh_from_db()
            return order
    # From here on the claim is committed: a second run finds nothing pending and sends nothing.
    try:
        if order.via_liquidation:
            placed = broker.liquidate_position(order.account_id, request.symbol)
            _record_sent(order, placed.broker_order_id if placed else None, liquidation=True)
        elif oco_partner is not None and other_request is not None:
            pair = broker.place_oco(request, other_request)
            _record_sent(order, pair.order_id)
            _record_sent(oco_partner, pair.other_id)
        elif bracket is not None:
            result = broker.place_bracket(bracket)
            _record_sent(order, result.entry_id)
            for leg in legs:
                leg_id = result.take_profit_id if leg.role == Order.Role.TAKE_PROFIT else result.stop_loss_id
                _record_sent(leg, leg_id)
        else:
            placed_order = broker.place_order(request)
            _record_sent(order, placed_order.broker_order_id)
    except BrokerUnavailable as error:
        Order.objects.filter(pk__in=ids, status=Order.Status.SUBMITTING).update(
            status=Order.Status.PENDING, submitted_at=None
        )
        raise RetryLater(error.message, countdown=error.retry_after) from None
    except OrderRejected as error:
        _record_outcome(ids, Order.Status.REJECTED, error.text)
    except BrokerNeedsAttention as error:
        _record_outcome(ids, Order.Status.FAILED, error.message)
        _mark_needs_attention(order.broker_account_id, error)
    except OrderOutcomeUnknown as error:
        _record_outcome(ids, Order.Status.UNKNOWN, error.message)
    except BrokerError as error:
        _record_outcome(ids, Order.Status.UNKNOWN, f"The broker's answer could not be read: {error.message}")
    except Exception as error:
        logger.exception("Order %s: unexpected error while sending", order.pk)
        _record_outcome(
            ids, Order.Status.UNKNOWN, f"Unexpected error while sending ({error.__class__.__name__})."
        )
    order.refresh_from_db()
    logger.info("Order %s (%s) is %s", order.pk, order.client_id, order.status)
    return order


def _record_sent(order: Order, broker_order_id: str | None, *, liquidation: bool = False) -> None:
    if liquidation and broker_order_id is None:
        Order.objects.filter(pk=order.pk, status=Order.Status.SUBMITTING).update(
            status=Order.Status.CANCELLED, error="Nothing to close: the position was already flat."
        )
    else:
        Order.objects.filter(pk=order.pk, status=Order.Status.SUBMITTING).update(
            status=Order.Status.WORKING, broker_order_id=broker_order_id
        )
    if liquidation:
        # The broker cancelled the position's working orders with the liquidation.
        Order.objects.filter(
            broker_account_id=order.broker_account_id,
            account_id=order.account_id,
            symbol=order.symbol,
            status=Order.Status.WORKING,
            role__in=PROTECTIVE_ROLES,
        ).update(status=Order.Status.CANCELLED)


def _record_outcome(ids: Sequence[int], status: str, text: str) -> None:
    Order.objects.filter(pk__in=ids, status=Order.Status.SUBMITTING).update(status=status, error=text)


def _mark_needs_attention(account_id: int, error: BrokerNeedsAttention) -> None:
    account = BrokerAccount.objects.filter(pk=account_id).first()
    if account is not None:
        broker_account_mark_needs_attention(account=account, reason=error.reason, message=error.message)


def order_settle(*, order_id: int, broker: Broker | None = None) -> Order | None:
    """Settle an order whose outcome is unknown by looking it up at the broker by client id; never resend it.

    Found: it takes the broker's status and id. Not found: it is marked not placed (the broker never took it),
    and reconciliation decides whether protection must be placed again. A liquidation (no client id) is
    settled from the position instead. Once an entry or exit is settled, what waited on it goes on.
    """
    order = Order.objects.select_related("broker_account").filter(pk=order_id).first()
    if order is None or order.status != Order.Status.UNKNOWN:
        return order
    broker = broker or broker_for_account(order.broker_account)
    if order.via_liquidation:
        _liquidation_settle(order, broker)
    else:
        _order_look_up(order, broker)
    order.refresh_from_db()
    if order.decision_id and order.status != Order.Status.UNKNOWN:
        if order.role in ENTRY_ROLES:
            _decision_resume_after(order)
        _decision_refresh(order.decision_id)
    return order


def _order_look_up(order: Order, broker: Broker) -> None:
    """Take the broker's status of an order found by its client id; not found means it was never placed.

    A bracket's exit may be held without our client id (Tradovate's brackets carry it only optionally): it is
    then the child of our entry with the exit's order type, looked for once the entry itself is settled.
    """
    try:
        found = broker.find_order_by_client_id(order.account_id, order.client_id)
        if found is None and order.bracket_entry_id is not None:
            entry = (
                Order.objects.filter(pk=order.bracket_entry_id).values("status", "broker_order_id").first()
            )
            if entry is not None and entry["status"] == Order.Status.UNKNOWN:
                return  # the entry first: whether this exit exists depends on it
            if entry is not None and entry["broker_order_id"]:
                found = _bracket_exit_at_broker(order, entry["broker_order_id"], broker)
    except BrokerError as error:
        logger.info("Order %s stays unknown: %s", order.pk, error.message)
        return
    if found is None:
        Order.objects.filter(pk=order.pk, status=Order.Status.UNKNOWN).update(
            status=Order.Status.FAILED,
            error="The broker has no order with this client id: it was never placed, and was not sent again.",
        )
    else:
        status = {
            BrokerOrderStatus.PENDING: Order.Status.WORKING,
            BrokerOrderStatus.WORKING: Order.Status.WORKING,
            BrokerOrderStatus.FILLED: Order.Status.FILLED,
            BrokerOrderStatus.CANCELLED: Order.Status.CANCELLED,
            BrokerOrderStatus.REJECTED: Order.Status.REJECTED,
        }.get(found.status)
        if status is not None:
            Order.objects.filter(pk=order.pk, status=Order.Status.UNKNOWN).update(
                status=status, broker_order_id=found.broker_order_id, error=""
            )


def _bracket_exit_at_broker(order: Order, entry_broker_id: str, broker: Broker) -> BrokerOrder | None:
    """The broker's child order of the entry with this exit's order type that no order of ours holds yet."""
    held = set(
        Order.objects.filter(broker_account_id=order.broker_account_id, account_id=order.account_id)
        .exclude(broker_order_id=None)
        .values_list("broker_order_id", flat=True)
    )
    for candidate in broker.list_orders(order.account_id):
        if (
            candidate.parent_id == entry_broker_id
            and candidate.order_type == order.order_type
            and candidate.broker_order_id not in held
        ):
            return candidate
    return None


def _later_orders_exist(order: Order) -> bool:
    """True when a later decision of the same trader already placed orders in this account and contract."""
    return Order.objects.filter(
        trader_id=order.trader_id,
        broker_account_id=order.broker_account_id,
        account_id=order.account_id,
        symbol=order.symbol,
        decision_id__gt=order.decision_id,
    ).exists()


def _decision_resume_after(order: Order) -> None:
    """An entry or exit was settled: hand its decision back to a worker to send (or put back) what waits.

    Its take-profits and stops were left pending while its outcome was unknown. Placed: they go out now.
    Not placed: they are failed, and the protection its decision cancelled is put back. Either way only if
    no later signal of the trader has been acted on in this account: the position is then no longer the one
    they were planned for, and reconciliation owns its protection.
    """
    waiting = Order.objects.filter(
        decision_id=order.decision_id, account_id=order.account_id, status=Order.Status.PENDING
    )
    replaced = Order.objects.filter(
        broker_account_id=order.broker_account_id,
        account_id=order.account_id,
        status=Order.Status.CANCELLED,
        error=_replaced_note(order.decision_id),
    )
    # A liquidation that found the position flat did its job; any other cancelled entry never filled.
    placed = order.status in (Order.Status.WORKING, Order.Status.FILLED) or (
        order.via_liquidation and order.status == Order.Status.CANCELLED
    )
    refused = order.status in _STOPPING
    if not waiting.exists() and (placed or not refused or not replaced.exists()):
        return
    if _later_orders_exist(order):
        waiting.update(
            status=Order.Status.FAILED,
            error="Not sent: a later signal was acted on before this order's entry was settled.",
        )
        return
    if not placed:
        waiting.update(status=Order.Status.FAILED, error=_not_sent_after(order))
        if not refused or not replaced.exists():
            return
    resumed = Decision.objects.filter(pk=order.decision_id, status=Decision.Status.UNSETTLED).update(
        status=Decision.Status.PENDING, claim_token=None, lease_expires_at=None, finished_at=None
    )
    if resumed:
        _publish_on_commit("trader_signal_execute", [order.decision_id])


def _liquidation_settle(order: Order, broker: Broker) -> None:
    """Settle a liquidation whose outcome is unknown from the position: flat is done, else close it again.

    A liquidation only ever closes what is there, so sending it again cannot open a position, unless a later
    signal already opened one: then it is left to reconciliation rather than closing that.
    """
    if order.decision_id and _later_orders_exist(order):
        Order.objects.filter(pk=order.pk, status=Order.Status.UNKNOWN).update(
            status=Order.Status.FAILED,
            error="Its outcome stayed unknown and a later signal was acted on: the position is left to "
            "reconciliation.",
        )
        return
    try:
        quantity, _ = _broker_position(broker, order.account_id, order.symbol)
    except BrokerError as error:
        logger.info("Liquidation %s stays unknown: %s", order.pk, error.message)
        return
    if quantity == 0:
        Order.objects.filter(pk=order.pk, status=Order.Status.UNKNOWN).update(
            status=Order.Status.CANCELLED,
            error="The position is flat: the liquidation took effect or nothing was left to close.",
        )
        return
    # Claimed like a first send, so two settlements running together liquidate once.
    if not Order.objects.filter(pk=order.pk, status=Order.Status.UNKNOWN).update(
        status=Order.Status.SUBMITTING, submitted_at=timezone.now()
    ):
        return
    try:
        placed = broker.liquidate_position(order.account_id, order.broker_symbol or order.symbol)
    except OrderRejected as error:
        _record_outcome([order.pk], Order.Status.REJECTED, error.text)
    except BrokerUnavailable as error:
        _record_outcome([order.pk], Order.Status.UNKNOWN, error.message)  # looked at again by the sweeper
    except BrokerError as error:
        _record_outcome([order.pk], Order.Status.UNKNOWN, error.message)
    else:
        _record_sent(order, placed.broker_order_id if placed else None, liquidation=True)


def _decision_status_from_orders(statuses: Sequence[str]) -> str:
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


def _decision_finish(decision_id: int, token: uuid.UUID | None, *, fallback_reason: str = "") -> str:
    """Set the decision's status from its orders and release its claim."""
    orders = list(Order.objects.filter(decision_id=decision_id).order_by("sequence", "pk"))
    status = _decision_status_from_orders([order.status for order in orders])
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


def _decision_refresh(decision_id: int) -> None:
    """Recompute a finished decision's status after one of its orders was settled."""
    if Decision.objects.filter(pk=decision_id, status=Decision.Status.UNSETTLED).exists():
        _decision_finish(decision_id, None)


# --- syncing with the broker --------------------------------------------------------------------------------


@dataclass
class SyncReport:
    """What one sync changed."""

    orders_updated: int = 0
    fills_applied: int = 0
    positions_corrected: int = 0
    orders_cancelled: int = 0
    protection_replanned: int = 0


_FROM_BROKER = {
    BrokerOrderStatus.PENDING: Order.Status.WORKING,
    BrokerOrderStatus.WORKING: Order.Status.WORKING,
    BrokerOrderStatus.FILLED: Order.Status.FILLED,
    BrokerOrderStatus.CANCELLED: Order.Status.CANCELLED,
    BrokerOrderStatus.REJECTED: Order.Status.REJECTED,
}


def account_sync(*, account: BrokerAccount, broker: Broker | None = None) -> SyncReport:
    """Bring our orders, fills and positions of a broker account in line with what the broker reports."""
    broker = broker or broker_for_account(account)
    report = SyncReport()
    account_ids = set(account.subaccounts.filter(active=True).values_list("broker_id", flat=True))
    account_ids |= set(
        Position.objects.filter(broker_account=account)
        .exclude(quantity=0)
        .values_list("account_id", flat=True)
    )
    for account_id in sorted(account_ids):
        broker_orders = broker.list_orders(account_id)
        fills = broker.list_fills(account_id)
        positions = broker.list_positions(account_id)
        report.orders_updated += _sync_orders(account, account_id, broker_orders)
        report.fills_applied += _apply_fills(account, account_id, fills)
        report.positions_corrected += _correct_positions(account, account_id, positions)
        report.orders_cancelled += _cancel_needless_protection(account, account_id, broker)
        report.protection_replanned += _average_downs_replan(account, account_id, broker)
    return report


def _cancel_needless_protection(account: BrokerAccount, account_id: str, broker: Broker) -> int:
    """Cancel exits whose one-cancels-other partner filled, and exits and average-downs of a flat position.

    The broker pairs the two exits of a bracket or an OCO order itself; this catches a pair whose cancel it
    missed and exits placed apart. Left working, a stop after its take-profit filled would open a position
    the other way.
    """
    partner_filled = Order.objects.filter(
        decision_id=OuterRef("decision_id"),
        account_id=OuterRef("account_id"),
        oco_group=OuterRef("oco_group"),
        status=Order.Status.FILLED,
    ).exclude(pk=OuterRef("pk"))
    working = Order.objects.filter(
        broker_account=account, account_id=account_id, status=Order.Status.WORKING, role__in=PROTECTIVE_ROLES
    )
    needless = list(working.exclude(oco_group="").filter(Exists(partner_filled), decision__isnull=False))
    flat = set(
        Position.objects.filter(broker_account=account, account_id=account_id, quantity=0).values_list(
            "symbol", flat=True
        )
    )
    entering = set(
        Order.objects.filter(
            broker_account=account,
            account_id=account_id,
            role=Order.Role.ENTRY,
            status__in=(
                Order.Status.PENDING,
                Order.Status.SUBMITTING,
                Order.Status.WORKING,
                Order.Status.UNKNOWN,
            ),
        ).values_list("symbol", flat=True)
    )
    # A flat position with no entry on its way has nothing to protect and nothing to average.
    orphaned = flat - entering
    if orphaned:
        needless += [order for order in working.filter(symbol__in=orphaned) if order not in needless]
    cancelled = 0
    for order in needless:
        try:
            if order.broker_order_id:
                broker.cancel_order(order.broker_order_id)
        except OrderRejected as error:
            logger.info("Order %s was not cancelled: %s", order.pk, error.text)
            continue
        except BrokerError as error:
            logger.warning("Order %s could not be cancelled: %s", order.pk, error.message)
            continue
        cancelled += Order.objects.filter(pk=order.pk, status=Order.Status.WORKING).update(
            status=Order.Status.CANCELLED, error="Cancelled: nothing left for it to protect."
        )
    return cancelled


# Protection re-planned after an average-down filled sorts after the plan's own orders and restored copies.
AVERAGE_DOWN_SEQUENCE = 20_000


def _average_downs_replan(account: BrokerAccount, account_id: str, broker: Broker) -> int:
    """Re-plan the protection of each open position whose latest average-down filled; return orders sent."""
    sent = 0
    for position in Position.objects.filter(broker_account=account, account_id=account_id).exclude(
        quantity=0
    ):
        average_down = (
            Order.objects.select_related("decision__trader__recorder")
            .filter(
                broker_account=account,
                account_id=account_id,
                symbol=position.symbol,
                role=Order.Role.AVERAGE_DOWN,
                status=Order.Status.FILLED,
                decision__isnull=False,
            )
            .order_by("-pk")
            .first()
        )
        if average_down is not None:
            sent += _average_down_replan(broker, average_down, position)
    return sent


def _average_down_plan(average_down: Order, quantity: int, average: Decimal | None) -> plans.OrderPlan | None:
    """Take-profits and stops for the whole position from its average; None when there is nothing to plan."""
    side = risk.Side.LONG if average_down.action == Order.Action.BUY else risk.Side.SHORT
    if average is None or risk.Side.of(quantity) is not side:
        return None  # flat, or no longer the position the average-down grew
    trader = average_down.decision.trader
    link = TraderSubAccount.objects.filter(
        trader=trader, subaccount__broker_id=average_down.account_id
    ).first()
    try:
        return plans.replan_after_average_down(
            side=side,
            quantity=abs(quantity),
            average_price=average,
            contract=contract_for_symbol(trader.recorder.symbol),
            settings=recorder_plan_settings(trader.recorder, trader),
            multiplier=link.multiplier if link is not None else 1,
        )
    except (ValueError, SymbolError) as error:
        logger.warning("Average-down %s: its protection cannot be re-planned: %s", average_down.pk, error)
        return None


def _average_down_replan(broker: Broker, average_down: Order, position: Position) -> int:
    """Cover the position an average-down grew: cancel its exits, then send new ones from the new average.

    The new orders belong to the average-down's decision under plan keys naming it, so a repeat (the next
    sync, a second worker, a crash between steps) finds them made and sends only what is still pending.
    Nothing is sent until every old exit is confirmed gone at the broker: stacked stops could reverse it.
    """
    suffix = f"-a{average_down.pk}"
    ours = Q(decision_id=average_down.decision_id, plan_key__endswith=suffix)
    replanned = Order.objects.filter(ours, account_id=average_down.account_id)
    statuses = set(replanned.values_list("status", flat=True))
    if statuses and Order.Status.PENDING not in statuses:
        return 0  # done; reconciliation owns the protection from here
    if _later_orders_exist(average_down):
        return 0  # a later signal planned this position's protection
    if not statuses:
        expected = _average_down_plan(average_down, position.quantity, position.avg_price)
        if expected is None or not expected.intents:
            return 0
    account_id, root = average_down.account_id, average_down.symbol
    old = list(
        Order.objects.filter(
            broker_account_id=average_down.broker_account_id,
            account_id=account_id,
            symbol=root,
            status=Order.Status.WORKING,
            role__in=(Order.Role.TAKE_PROFIT, Order.Role.STOP_LOSS),
        ).exclude(ours)
    )
    try:
        for order in old:
            if not order.broker_order_id:
                continue
            try:
                broker.cancel_order(order.broker_order_id)
            except OrderRejected as error:
                # Filled or cancelled already: the next sync records which; the position is read below.
                logger.info("Cancel of order %s refused: %s", order.pk, error.text)
                continue
            Order.objects.filter(pk=order.pk, status=Order.Status.WORKING).update(
                status=Order.Status.CANCELLED,
                error=f"Cancelled: replaced by the protection of average-down order {average_down.pk}.",
            )
        still_open = {item.broker_order_id for item in broker.list_orders(account_id) if item.is_open}
        if still_open & {order.broker_order_id for order in old}:
            logger.warning(
                "Average-down %s: an old exit is still working; nothing new is sent", average_down.pk
            )
            return 0
        quantity, average = _broker_position(broker, account_id, root)
    except BrokerError as error:
        # A cancel of unknown outcome: new protection now could stack on the old. The next sync tries again.
        logger.warning("Average-down %s: protection not re-planned yet: %s", average_down.pk, error.message)
        return 0
    if not statuses:
        plan = _average_down_plan(average_down, quantity, average)
        if plan is None:
            return 0
        try:
            with transaction.atomic():
                for number, intent in enumerate(plan.intents):
                    Order.objects.create(
                        decision_id=average_down.decision_id,
                        signal_id=average_down.signal_id,
                        trader_id=average_down.trader_id,
                        broker_account_id=average_down.broker_account_id,
                        account_id=account_id,
                        account_name=average_down.account_name,
                        symbol=root,
                        broker_symbol=average_down.broker_symbol,
                        client_id=_new_client_id(),
                        plan_key=f"{intent.key}{suffix}"[:16],
                        sequence=AVERAGE_DOWN_SEQUENCE + number,
                        # Pairs stay paired (sent as one OCO), in groups apart from the plan's own.
                        oco_group=f"a{average_down.pk}-{intent.oco}"[:16] if intent.oco else "",
                        role=intent.role.value,
                        action=intent.action.value,
                        order_type=intent.order_type.value,
                        quantity=intent.quantity,
                        price=intent.price,
                        stop_price=intent.stop_price,
                        trail_distance=intent.trail_distance,
                    )
        except IntegrityError:
            pass  # made by a run alongside this one; sent below if still pending
    pending = list(replanned.filter(status=Order.Status.PENDING).order_by("sequence", "pk"))
    sent = 0
    for order in pending:
        order.refresh_from_db()
        if order.status != Order.Status.PENDING:
            continue  # sent with its OCO partner, or by a run alongside this one
        partner = _oco_partner(order, pending)
        try:
            order_submit(order=order, broker=broker, oco_partner=partner)
        except RetryLater as error:
            logger.warning(
                "Average-down %s: protection waits for the broker: %s", average_down.pk, error.message
            )
            break
        sent += 1 if partner is None else 2
    return sent


def _sync_orders(account: BrokerAccount, account_id: str, broker_orders) -> int:
    known = {order.broker_order_id: order for order in broker_orders}
    ours = Order.objects.filter(
        broker_account=account,
        account_id=account_id,
        broker_order_id__in=list(known),
        status=Order.Status.WORKING,
    )
    changed = 0
    for order in ours:
        status = _FROM_BROKER.get(known[order.broker_order_id].status)
        if status is not None and status != order.status:
            changed += Order.objects.filter(pk=order.pk, status=Order.Status.WORKING).update(status=status)
    return changed


def _apply_fills(account: BrokerAccount, account_id: str, fills) -> int:
    if not fills:
        return 0
    seen = set(
        Fill.objects.filter(
            broker_account=account, broker_fill_id__in=[fill.broker_fill_id for fill in fills]
        ).values_list("broker_fill_id", flat=True)
    )
    applied = 0
    contracts = {}
    for fill in sorted(
        (fill for fill in fills if fill.broker_fill_id not in seen),
        key=lambda item: (item.timestamp or timezone.now(), item.broker_fill_id),
    ):
        try:
            root = contract_root(fill.symbol)
            contract = contracts.get(root) or contract_for_symbol(root)
        except SymbolError:
            logger.warning(
                "Fill %s of account %s is in an unknown contract %s",
                fill.broker_fill_id,
                account.pk,
                fill.symbol,
            )
            continue
        contracts[root] = contract
        with transaction.atomic():
            Position.objects.get_or_create(broker_account=account, account_id=account_id, symbol=root)
            position = Position.objects.select_for_update().get(
                broker_account=account, account_id=account_id, symbol=root
            )
            if Fill.objects.filter(broker_account=account, broker_fill_id=fill.broker_fill_id).exists():
                continue
            signed = fill.quantity if fill.action == "Buy" else -fill.quantity
            book = risk.RecorderBook(position.quantity, position.avg_price, position.realized_pnl)
            book, realized = book.fill(signed, fill.price, contract)
            position.quantity, position.avg_price, position.realized_pnl = (
                book.position,
                book.avg_price,
                book.realized_pnl,
            )
            if not position.account_name:
                position.account_name = (
                    account.subaccounts.filter(broker_id=account_id).values_list("name", flat=True).first()
                    or ""
                )
            position.save()
            # Matched by the broker's order id together with the account, never by client id alone.
            order = Order.objects.filter(broker_account=account, broker_order_id=fill.broker_order_id).first()
            filled_at = fill.timestamp or timezone.now()
            Fill.objects.create(
                broker_account=account,
                account_id=account_id,
                order=order,
                broker_fill_id=fill.broker_fill_id,
                broker_order_id=fill.broker_order_id,
                symbol=root,
                action=fill.action,
                quantity=fill.quantity,
                price=fill.price,
                realized_pnl=realized,
                session=risk.session_key(filled_at),
                filled_at=filled_at,
            )
            if order is not None:
                _order_filled(order, fill.quantity, fill.price)
            applied += 1
    return applied


def _order_filled(order: Order, quantity: int, price: Decimal) -> None:
    locked = Order.objects.select_for_update().get(pk=order.pk)
    filled = min(locked.quantity, locked.filled_quantity + quantity)
    previous = locked.filled_quantity
    if locked.avg_fill_price is None or previous == 0:
        average = price
    else:
        average = (
            (locked.avg_fill_price * previous + price * (filled - previous)) / filled if filled else price
        )
    locked.filled_quantity = filled
    locked.avg_fill_price = average.quantize(Decimal("1e-8"))
    if filled >= locked.quantity and locked.status in (
        Order.Status.WORKING,
        Order.Status.UNKNOWN,
        Order.Status.SUBMITTING,
    ):
        locked.status = Order.Status.FILLED
    locked.save(update_fields=["filled_quantity", "avg_fill_price", "status", "updated_at"])


def _correct_positions(account: BrokerAccount, account_id: str, positions) -> int:
    """The broker is the truth for positions: ours take its quantity and average where they differ."""
    truth: dict[str, tuple[int, Decimal | None]] = {}
    for position in positions:
        try:
            root = contract_root(position.symbol)
        except SymbolError:
            continue
        quantity, average = truth.get(root, (0, None))
        truth[root] = (quantity + position.quantity, position.avg_price if average is None else average)
    corrected = 0
    ours = {row.symbol: row for row in Position.objects.filter(broker_account=account, account_id=account_id)}
    for root in set(truth) | {symbol for symbol, row in ours.items() if row.quantity}:
        quantity, average = truth.get(root, (0, None))
        row = ours.get(root)
        if row is not None and row.quantity == quantity and (quantity == 0 or row.avg_price == average):
            continue
        if row is not None and row.quantity == quantity and quantity and average is None:
            continue
        with transaction.atomic():
            Position.objects.get_or_create(broker_account=account, account_id=account_id, symbol=root)
            locked = Position.objects.select_for_update().get(
                broker_account=account, account_id=account_id, symbol=root
            )
            if locked.quantity != quantity:
                logger.warning(
                    "Position of account %s/%s in %s corrected from %s to %s (the broker's)",
                    account.pk,
                    account_id,
                    root,
                    locked.quantity,
                    quantity,
                )
            locked.quantity = quantity
            locked.avg_price = (average if average is not None else locked.avg_price) if quantity else None
            if quantity and locked.avg_price is None:
                continue
            locked.save(update_fields=["quantity", "avg_price", "updated_at"])
            corrected += 1
    return corrected


# --- the sweeper --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepReport:
    """What one sweep re-queued."""

    signals: int
    decisions: int
    orders_to_settle: int


def signals_sweep(*, now: datetime | None = None, batch: int = SWEEP_BATCH) -> SweepReport:
    """Re-queue signals and decisions a lost message or a dead worker left behind; settle unknown orders."""
    now = now or timezone.now()
    old = now - SWEEP_PENDING_AFTER
    # One message per recorder: its task works through the recorder's backlog in order.
    signal_ids = _recorder_heads(
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
        _publish("signal_process", signal_id)
    for decision_id in decision_ids:
        _publish("trader_signal_execute", decision_id)
    for order_id in order_ids:
        _publish("order_settle", order_id)
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
        _publish("signal_process", signal_id)
    return len(unfinished)


# --- the demo -----------------------------------------------------------------------------------------------

DEMO_ACCOUNT_NAME = "Paper"
DEMO_RECORDER_NAME = "Demo ES strategy"


def demo_trading_seed(user) -> dict[str, Any]:
    """Give a user a paper account, an ES recorder and a trader linking them (idempotent); return them."""
    account = BrokerAccount.objects.filter(owner=user, name=DEMO_ACCOUNT_NAME).first()
    if account is None:
        account = services.broker_account_create(
            owner=user, name=DEMO_ACCOUNT_NAME, kind=BrokerAccount.Kind.PAPER
        )
    recorder = Recorder.objects.filter(owner=user, name=DEMO_RECORDER_NAME).first()
    if recorder is None:
        recorder = services.recorder_create(
            owner=user,
            name=DEMO_RECORDER_NAME,
            symbol="ES",
            tp_targets=[{"value": 8, "trim": None}],
            sl_enabled=True,
            sl_amount=Decimal(8),
        )
    trader = Trader.objects.filter(recorder=recorder, account=account).first()
    if trader is None:
        trader = services.trader_create(owner=user, recorder=recorder, account=account)
    return {
        "account": account,
        "recorder": recorder,
        "trader": trader,
        "webhook_path": webhook_path(recorder.webhook_token),
    }
