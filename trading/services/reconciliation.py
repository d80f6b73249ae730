"""Reconciliation: make our orders, fills and positions agree with the broker, and repair what is missing.

Every minute (Celery beat runs `reconcile_all`, which queues one `reconcile_account` task per account, so a
slow broker holds back only its own account) and from `python manage.py reconcile`. For each account in use:

1. orders whose outcome is unknown are settled by reading the broker's orders, never by sending them again;
2. order statuses, fills and positions are taken from the broker (`account_sync`), which also
   cancels the protective orders of flat positions and the partners of filled one-cancels-other exits;
3. a position past its recorder's cutoff is flattened when auto-flat is on;
4. take-profits and stops an open position lacks are placed again, old ones cancelled first (never stacked).

Every action is stored as a ReconcileAction with its reason. A dry run reads the broker and the database and
reports what it would do; it changes nothing at the broker or in the database.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from trading import plans
from trading.brokers import registry
from trading.brokers.base import (
    Broker,
    BrokerError,
    BrokerNeedsAttention,
    BrokerOrder,
    BrokerPosition,
    OrderOutcomeUnknown,
    OrderRejected,
    OrderRequest,
    PlacedOco,
    PlacedOrder,
)
from trading.brokers.base import OrderStatus as BrokerOrderStatus
from trading.claims import account_lease_release, account_lease_take
from trading.errors import RetryLater
from trading.models import (
    BrokerAccount,
    Decision,
    Fill,
    Order,
    Position,
    ReconcileAction,
    ReconcileRun,
    Trader,
    TraderSubAccount,
)
from trading.risk import Side, auto_flat_due
from trading.selectors import contract_for_symbol, recorder_plan_settings, recorder_risk_settings
from trading.services.broker_accounts import (
    SELF_HEALING_REASONS,
    broker_account_mark_active,
    broker_account_mark_needs_attention,
)
from trading.services.contracts import contract_root
from trading.services.decisions import decision_refresh
from trading.services.killswitches import killswitch_reason
from trading.services.orders import (
    ORDER_STATUS_FROM_BROKER,
    PROTECTION_ROLES,
    RESTING_ROLES,
    order_settle,
    order_submit,
)
from trading.services.sync import account_sync
from trading.symbols import SymbolError

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


# --- results ------------------------------------------------------------------------------------------------


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


class _Log:
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


# --- the broker, read once per run --------------------------------------------------------------------------


class _SnapshotBroker(Broker):
    """A broker whose lists are read once per run and shared by every step; any change forgets them.

    In a dry run every changing call is refused before it reaches the broker.
    """

    def __init__(self, broker: Broker, *, dry_run: bool) -> None:
        self._broker = broker
        self._dry_run = dry_run
        self._reads: dict[tuple[str, str], list[Any]] = {}
        self.changes = 0

    def forget(self) -> None:
        """Read the broker again next time (after a change, or to confirm one)."""
        self._reads.clear()

    def _read(self, kind: str, account_id: str, load: Callable[[], list[Any]]) -> list[Any]:
        key = (kind, account_id)
        if key not in self._reads:
            self._reads[key] = load()
        return self._reads[key]

    def _change(self, call: Callable[[], Any]) -> Any:
        if self._dry_run:
            raise AssertionError("A dry run must not change anything at the broker.")
        self.changes += 1
        try:
            return call()
        finally:
            self.forget()

    def list_accounts(self):
        return self._broker.list_accounts()

    def account_balance(self, account_id: str):
        return self._broker.account_balance(account_id)

    def list_orders(self, account_id: str) -> list[BrokerOrder]:
        return self._read("orders", account_id, lambda: self._broker.list_orders(account_id))

    def list_fills(self, account_id: str):
        return self._read("fills", account_id, lambda: self._broker.list_fills(account_id))

    def list_positions(self, account_id: str) -> list[BrokerPosition]:
        return self._read("positions", account_id, lambda: self._broker.list_positions(account_id))

    def find_order_by_client_id(self, account_id: str, client_id: str) -> BrokerOrder | None:
        for order in self.list_orders(account_id):
            if order.client_id == client_id:
                return order
        # The lists hold recent orders only; the broker's own lookup is the authority.
        return self._broker.find_order_by_client_id(account_id, client_id)

    def place_order(self, order: OrderRequest) -> PlacedOrder:
        return self._change(lambda: self._broker.place_order(order))

    def place_bracket(self, bracket):
        return self._change(lambda: self._broker.place_bracket(bracket))

    def place_oco(self, order: OrderRequest, other: OrderRequest) -> PlacedOco:
        return self._change(lambda: self._broker.place_oco(order, other))

    def modify_order(self, broker_order_id: str, **changes: Any) -> None:
        return self._change(lambda: self._broker.modify_order(broker_order_id, **changes))

    def cancel_order(self, broker_order_id: str) -> None:
        return self._change(lambda: self._broker.cancel_order(broker_order_id))

    def liquidate_position(self, account_id: str, symbol: str) -> PlacedOrder | None:
        return self._change(lambda: self._broker.liquidate_position(account_id, symbol))


# --- which accounts -----------------------------------------------------------------------------------------


def _in_use() -> Q:
    return Q(
        Exists(Trader.objects.filter(account=OuterRef("pk"), enabled=True))
        | Exists(Position.objects.filter(broker_account=OuterRef("pk")).exclude(quantity=0))
        | Exists(
            Order.objects.filter(
                broker_account=OuterRef("pk"), status__in=(Order.Status.WORKING, Order.Status.UNKNOWN)
            )
        )
    )


def accounts_to_reconcile(*, now: datetime | None = None) -> list[int]:
    """Return the ids of the accounts in use that can be reconciled now.

    In use: an enabled trader, an open position or an order working or unknown. Accounts that need their
    owner are left out, except those whose captcha pause is over: their reconciliation tries the login again.
    """
    now = now or timezone.now()
    accounts = BrokerAccount.objects.filter(_in_use()).filter(
        Q(status=BrokerAccount.Status.ACTIVE)
        | Q(
            kind=BrokerAccount.Kind.TRADOVATE,
            status=BrokerAccount.Status.NEEDS_ATTENTION,
            status_reason__in=SELF_HEALING_REASONS,
            retry_not_before__lte=now,
        )
    )
    return list(accounts.order_by("pk").values_list("pk", flat=True))


def reconcile_runs_prune(*, now: datetime | None = None) -> int:
    """Delete reconciliation runs (and their actions) older than RUN_RETENTION; return how many runs."""
    cutoff = (now or timezone.now()) - RUN_RETENTION
    _, by_model = ReconcileRun.objects.filter(started_at__lt=cutoff).delete()
    return by_model.get(ReconcileRun._meta.label, 0)


# --- one account --------------------------------------------------------------------------------------------


def account_reconcile(
    *,
    account_id: int,
    dry_run: bool = False,
    trigger: str = ReconcileRun.Trigger.SCHEDULE,
    now: datetime | None = None,
    broker: Broker | None = None,
) -> ReconcileReport:
    """Reconcile one broker account with its broker (see the module's docstring); never raises for the broker.

    One reconciliation of an account runs at a time (a lease on its row); a second one just says so.
    """
    now = now or timezone.now()
    account = BrokerAccount.objects.select_related("owner").filter(pk=account_id).first()
    if account is None:
        return ReconcileReport(
            account_id, "", dry_run, error=f"There is no broker account with the id {account_id}."
        )
    log = _Log(account, trigger=trigger, dry_run=dry_run, started_at=now)
    if dry_run:
        return _reconcile(log, account, broker, now)
    held_until = account_lease_take(account.pk, "reconcile_until", LOCK_SECONDS)
    if held_until is None:
        log.note("Another reconciliation of this account is running: this one was skipped.")
        return log.finish()
    try:
        return _reconcile(log, account, broker, now)
    finally:
        account_lease_release(account.pk, "reconcile_until", held_until)


def _reconcile(log: _Log, account: BrokerAccount, broker: Broker | None, now: datetime) -> ReconcileReport:
    dry_run = log.dry_run
    try:
        if account.needs_attention:
            if not _may_retry(account, now):
                return log.finish(
                    error=f"{account.name} needs its owner: "
                    f"{account.status_message or account.status_reason}",
                    store=False,
                )
            if dry_run:
                log.note("The pause Tradovate asked for is over: a real run would try the login again.")
                return log.finish()
            broker = broker or registry.broker_for_account(account, retrying=True)
            broker.list_accounts()
            broker_account_mark_active(account=account)
            log.step(
                Kind.RECONNECT,
                "Tradovate accepts the login again after the pause it asked for: trading resumes.",
            )
        broker = broker or registry.broker_for_account(account, dry_run=dry_run)
        snapshot = _SnapshotBroker(broker, dry_run=dry_run)
        account_ids = _account_ids(account)
        for account_id in account_ids:
            _settle_unknown(log, snapshot, account, account_id, now)
        if dry_run:
            for account_id in account_ids:
                _preview_sync(log, snapshot, account, account_id)
        else:
            _sync(log, snapshot, account)
        blocked = killswitch_reason(user_id=account.owner_id, account_id=account.pk)
        changes = snapshot.changes
        for account_id in account_ids:
            for root, (quantity, average) in sorted(_broker_positions(snapshot, account_id).items()):
                _position_repair(log, snapshot, account, account_id, root, quantity, average, now, blocked)
        if snapshot.changes > changes:
            # What this run sent may have filled at once (a liquidation, a paper order): record it now.
            _sync(log, snapshot, account)
    except BrokerNeedsAttention as error:
        if not dry_run:
            broker_account_mark_needs_attention(account=account, reason=error.reason, message=error.message)
            log.step(Kind.ERROR, f"The account was marked as needing attention: {error.message}")
        return log.finish(error=error.message)
    except BrokerError as error:
        if not dry_run:
            log.step(Kind.ERROR, f"The broker could not be read or changed: {error.message}")
        return log.finish(error=error.message)
    except Exception as error:
        logger.exception("Reconciliation of account %s failed", account.pk)
        message = f"Internal error while reconciling ({error.__class__.__name__}: {error})."
        if not dry_run:
            log.step(Kind.ERROR, message)
        return log.finish(error=message)
    return log.finish()


def _may_retry(account: BrokerAccount, now: datetime) -> bool:
    return (
        account.status_reason in SELF_HEALING_REASONS
        and account.retry_not_before is not None
        and account.retry_not_before <= now
    )


def _account_ids(account: BrokerAccount) -> list[str]:
    """The broker's accounts to look at: the chosen ones, and any holding our position or an open order."""
    ids = set(account.subaccounts.filter(active=True).values_list("broker_id", flat=True))
    ids |= set(
        Position.objects.filter(broker_account=account)
        .exclude(quantity=0)
        .values_list("account_id", flat=True)
    )
    ids |= set(
        Order.objects.filter(
            broker_account=account, status__in=(Order.Status.WORKING, Order.Status.UNKNOWN)
        ).values_list("account_id", flat=True)
    )
    return sorted(ids)


def _root_of(symbol: str) -> str | None:
    try:
        return contract_root(symbol)
    except SymbolError:
        return None


def _broker_positions(broker: Broker, account_id: str) -> dict[str, tuple[int, Decimal | None]]:
    """Non-flat positions by contract root; several contract months of one root (a roll) count as one."""
    result: dict[str, tuple[int, Decimal | None]] = {}
    for position in broker.list_positions(account_id):
        root = _root_of(position.symbol)
        if root is None or not position.quantity:
            continue
        quantity, average = result.get(root, (0, None))
        total = quantity + position.quantity
        if not quantity:
            average = position.avg_price
        elif (
            average is not None and position.avg_price is not None and total and (quantity > 0) == (total > 0)
        ):
            average = (average * quantity + position.avg_price * position.quantity) / total
        result[root] = (total, average)
    return {root: value for root, value in result.items() if value[0]}


def _describe(order: Order) -> str:
    """`Sell 1 ES limit at 5002`, `Sell 1 ES trailing stop at 4998 (2 behind)`."""
    text = f"{order.action} {order.quantity} {order.symbol} {order.get_order_type_display().lower()}"
    at = order.price if order.order_type == Order.Type.LIMIT else order.stop_price
    if at is not None:
        text += f" at {at.normalize():f}"
    if order.trail_distance is not None:
        text += f" ({order.trail_distance.normalize():f} behind)"
    return text


# --- 1. unknown outcomes ------------------------------------------------------------------------------------


def _settle_unknown(
    log: _Log, broker: _SnapshotBroker, account: BrokerAccount, account_id: str, now: datetime
) -> None:
    unknown = Order.objects.filter(
        broker_account=account,
        account_id=account_id,
        status=Order.Status.UNKNOWN,
        updated_at__lt=now - UNKNOWN_GRACE,
    ).order_by("pk")
    for order in unknown:
        if order.via_liquidation:
            _settle_liquidation(log, broker, account, order)
            continue
        if log.dry_run:
            found = broker.find_order_by_client_id(account_id, order.client_id)
            if found is None:
                reason = (
                    f"The broker has no order {order.client_id}: it would be marked not placed, never resent."
                )
            else:
                reason = (
                    f"The broker holds {order.client_id} as order {found.broker_order_id} "
                    f"({found.raw_status}): its id and status would be adopted."
                )
            log.step(Kind.SETTLE, reason, account_id=account_id, symbol=order.symbol, order=order)
            continue
        settled = order_settle(order_id=order.pk, broker=broker)
        if settled is None or settled.status == Order.Status.UNKNOWN:
            log.note(f"Order {order.pk} ({order.client_id}) is still unknown: the broker could not be asked.")
            continue
        if settled.status == Order.Status.FAILED:
            reason = (
                f"The broker has no order {order.client_id}: it was never placed and is not sent again. "
                "Missing protection is placed again below if the position needs it."
            )
        else:
            reason = (
                f"The broker holds {order.client_id} as order {settled.broker_order_id}: "
                f"adopted as {settled.get_status_display().lower()}."
            )
        log.step(Kind.SETTLE, reason, account_id=account_id, symbol=order.symbol, order=settled)


def _settle_liquidation(log: _Log, broker: _SnapshotBroker, account: BrokerAccount, order: Order) -> None:
    """A liquidation carries no client id of ours: the position says whether it went through."""
    quantity, _ = _broker_positions(broker, order.account_id).get(order.symbol, (0, None))
    broker_order_id = None
    if quantity == 0:
        known = set(
            Order.objects.filter(broker_account=account, broker_order_id__isnull=False).values_list(
                "broker_order_id", flat=True
            )
        )
        closing = next(
            (
                item
                for item in broker.list_orders(order.account_id)
                if item.client_id is None
                and item.order_type == "Market"
                and item.action == order.action
                and item.status == BrokerOrderStatus.FILLED
                and item.broker_order_id not in known
                and _root_of(item.symbol) == order.symbol
            ),
            None,
        )
        if closing is not None:
            status, broker_order_id = Order.Status.FILLED, closing.broker_order_id
            reason = f"The position is flat: the liquidation went through as order {broker_order_id}."
        else:
            status = Order.Status.CANCELLED
            reason = "The position is flat and no closing order was found: nothing was left to close."
    else:
        status = Order.Status.FAILED
        reason = f"The broker still holds {quantity:+d} {order.symbol}: the liquidation did not take effect."
    if not log.dry_run:
        updated = Order.objects.filter(pk=order.pk, status=Order.Status.UNKNOWN).update(
            status=status, broker_order_id=broker_order_id, error=reason
        )
        if updated and order.decision_id:
            decision_refresh(order.decision_id)
    log.step(Kind.SETTLE, reason, account_id=order.account_id, symbol=order.symbol, order=order)
    if status == Order.Status.FAILED:
        _liquidate_again(log, broker, account, order)


def _liquidate_again(log: _Log, broker: _SnapshotBroker, account: BrokerAccount, lost: Order) -> None:
    """Send a close whose liquidation never took effect once more: it closes only what is open.

    Not when a later signal has acted on the position since (its orders decide now), and not twice within
    FLATTEN_BACKOFF.
    """
    where = f"{lost.symbol} on {lost.account_id}"
    later = Order.objects.filter(
        broker_account=account,
        account_id=lost.account_id,
        symbol=lost.symbol,
        pk__gt=lost.pk,
        decision__isnull=False,
    ).exists()
    if later:
        log.note(f"{where}: a later signal acted on the position, so the failed close is not sent again.")
        return
    if ReconcileAction.objects.filter(
        broker_account=account,
        account_id=lost.account_id,
        symbol=lost.symbol,
        kind=Kind.FLATTEN,
        created_at__gte=timezone.now() - FLATTEN_BACKOFF,
    ).exists():
        log.note(f"{where}: the close was sent again less than {FLATTEN_BACKOFF} ago; waiting for it.")
        return
    reason = f"The close of {where} never took effect: its liquidation is sent again."
    if log.dry_run:
        log.step(Kind.FLATTEN, reason, account_id=lost.account_id, symbol=lost.symbol)
        return
    order = Order.objects.create(
        signal_id=lost.signal_id,
        trader_id=lost.trader_id,
        broker_account=account,
        account_id=lost.account_id,
        account_name=lost.account_name,
        symbol=lost.symbol,
        broker_symbol=lost.broker_symbol,
        client_id=_client_id(),
        plan_key="flatten",
        via_liquidation=True,
        role=Order.Role.EXIT,
        action=lost.action,
        order_type=Order.Type.MARKET,
        quantity=lost.quantity,
    )
    sent = _submit(order, broker)
    log.step(
        Kind.FLATTEN, f"{reason} {_outcome(sent)}", account_id=lost.account_id, symbol=lost.symbol, order=sent
    )


# --- 2. statuses, fills and positions -----------------------------------------------------------------------


def _sync(log: _Log, broker: _SnapshotBroker, account: BrokerAccount) -> None:
    """Run account_sync and record what it changed."""
    working = list(
        Order.objects.filter(broker_account=account, status=Order.Status.WORKING).values_list("pk", flat=True)
    )
    positions = {
        (row.account_id, row.symbol): row.quantity for row in Position.objects.filter(broker_account=account)
    }
    fills_before = Fill.objects.filter(broker_account=account).count()
    account_sync(account=account, broker=broker)
    for order in Order.objects.filter(pk__in=working).exclude(status=Order.Status.WORKING).order_by("pk"):
        if (
            order.status == Order.Status.CANCELLED
            and order.cancel_reason == Order.CancelReason.NOTHING_TO_PROTECT
        ):
            kind = Kind.CANCEL_ORPHAN
            reason = (
                f"Cancelled {_describe(order)}: nothing left for it to protect "
                "(its position is flat, or the other order of its pair filled)."
            )
        else:
            kind = Kind.ORDER_STATUS
            reason = f"The broker reports {_describe(order)} as {order.get_status_display().lower()}."
        log.step(kind, reason, account_id=order.account_id, symbol=order.symbol, order=order)
    applied = Fill.objects.filter(broker_account=account).count() - fills_before
    if applied:
        log.step(Kind.FILLS, f"Applied {applied} fill(s) the broker reported.")
    for row in Position.objects.filter(broker_account=account).order_by("account_id", "symbol"):
        before = positions.get((row.account_id, row.symbol), 0)
        if row.quantity != before:
            log.step(
                Kind.POSITION,
                f"{row.symbol} is now {row.quantity:+d} (was {before:+d}), as the broker holds it.",
                account_id=row.account_id,
                symbol=row.symbol,
            )


def _preview_sync(log: _Log, broker: _SnapshotBroker, account: BrokerAccount, account_id: str) -> None:
    """What account_sync would change, read-only (a dry run)."""
    at_broker = {order.broker_order_id: order for order in broker.list_orders(account_id)}
    working = Order.objects.filter(
        broker_account=account,
        account_id=account_id,
        status=Order.Status.WORKING,
        broker_order_id__in=list(at_broker),
    )
    for order in working:
        status = ORDER_STATUS_FROM_BROKER.get(at_broker[order.broker_order_id].status)
        if status is not None and status != Order.Status.WORKING:
            log.step(
                Kind.ORDER_STATUS,
                f"The broker reports {_describe(order)} as {Order.Status(status).label.lower()}.",
                account_id=account_id,
                symbol=order.symbol,
                order=order,
            )
    fills = broker.list_fills(account_id)
    seen = set(
        Fill.objects.filter(
            broker_account=account, broker_fill_id__in=[fill.broker_fill_id for fill in fills]
        ).values_list("broker_fill_id", flat=True)
    )
    unseen = [fill for fill in fills if fill.broker_fill_id not in seen]
    if unseen:
        log.step(Kind.FILLS, f"Would apply {len(unseen)} fill(s) the broker reported.", account_id=account_id)
    truth = _broker_positions(broker, account_id)
    ours = dict(
        Position.objects.filter(broker_account=account, account_id=account_id).values_list(
            "symbol", "quantity"
        )
    )
    for root in sorted(set(truth) | {symbol for symbol, quantity in ours.items() if quantity}):
        quantity = truth.get(root, (0, None))[0]
        if ours.get(root, 0) != quantity:
            log.step(
                Kind.POSITION,
                f"{root} would become {quantity:+d} (ours says {ours.get(root, 0):+d}), "
                "as the broker holds it.",
                account_id=account_id,
                symbol=root,
            )
    entering = set(
        Order.objects.filter(
            broker_account=account,
            account_id=account_id,
            role=Order.Role.ENTRY,
            status__in=IN_FLIGHT_STATUSES,
        ).values_list("symbol", flat=True)
    )
    still_open = [
        order
        for order in Order.objects.filter(
            broker_account=account,
            account_id=account_id,
            status=Order.Status.WORKING,
            role__in=RESTING_ROLES,
        ).order_by("pk")
        if order.broker_order_id in at_broker and at_broker[order.broker_order_id].is_open
    ]
    for order in still_open:
        if order.symbol not in truth and order.symbol not in entering:
            log.step(
                Kind.CANCEL_ORPHAN,
                f"Would cancel {_describe(order)}: its position is flat at the broker.",
                account_id=account_id,
                symbol=order.symbol,
                order=order,
            )


# --- 3 and 4. open positions --------------------------------------------------------------------------------


@dataclass
class _Repair:
    """Orders to cancel (ours, open at the broker) and new ones to place for one position."""

    why: str
    cancel: list[Order]
    place: list[Order]


def _position_repair(
    log: _Log,
    broker: _SnapshotBroker,
    account: BrokerAccount,
    account_id: str,
    root: str,
    quantity: int,
    average: Decimal | None,
    now: datetime,
    blocked: str | None,
) -> None:
    where = f"{root} {quantity:+d} on {account_id}"
    link = _follower(account, account_id, root)
    if link is None:
        log.note(f"{where}: no single enabled trader follows it here, so it is left alone.")
        return
    busy = _busy(broker, account, account_id, root, link, quantity)
    if busy:
        log.note(f"{where}: {busy}")
        return
    trader, recorder = link.trader, link.trader.recorder
    anchor = _opening_decision(account, account_id, root, trader)
    if anchor is None:
        log.note(f"{where}: no order of JustTrades opened it, so it is left alone.")
        return
    risk_settings = recorder_risk_settings(recorder, trader)
    if auto_flat_due(now, risk_settings, quantity):
        if blocked:
            log.note(f"{where}: auto-flat is due, but {blocked}")
            return
        _flatten(log, broker, account, link, root, quantity, now, risk_settings.window_label())
        return
    if average is None:
        log.note(f"{where}: the broker gives no average price, so its protection cannot be checked.")
        return
    repair = _protection_repair(log, broker, account, link, root, quantity, average, anchor, now)
    if repair is None:
        return
    if blocked:
        log.note(f"{where}: {repair.why} Nothing is sent: {blocked}")
        return
    _carry_out(log, broker, account_id, root, repair)


def _opening_decision(account: BrokerAccount, account_id: str, root: str, trader: Trader) -> int | None:
    """The decision whose entry opened (or last grew) the position, unless a close of ours came after it."""
    entry = (
        Order.objects.filter(
            broker_account=account,
            account_id=account_id,
            symbol=root,
            trader=trader,
            decision__isnull=False,
            role__in=(Order.Role.ENTRY, Order.Role.AVERAGE_DOWN),
            # Working too: a dry run has not yet taken the fill the broker reports.
            status__in=(Order.Status.WORKING, Order.Status.FILLED),
        )
        .order_by("-pk")
        .first()
    )
    if entry is None:
        return None
    closed_after = Order.objects.filter(
        broker_account=account,
        account_id=account_id,
        symbol=root,
        pk__gt=entry.pk,
        via_liquidation=True,
        status=Order.Status.FILLED,
    ).exists()
    return None if closed_after else entry.decision_id


def _follower(account: BrokerAccount, account_id: str, root: str) -> TraderSubAccount | None:
    """The one enabled trader link that trades this position; with several, the one that traded it last."""
    links = [
        link
        for link in TraderSubAccount.objects.filter(
            trader__account=account,
            trader__enabled=True,
            subaccount__broker_id=account_id,
            subaccount__active=True,
        ).select_related("trader__recorder", "subaccount")
        if _root_of(link.trader.recorder.symbol) == root
    ]
    if len(links) <= 1:
        return links[0] if links else None
    last = (
        Order.objects.filter(
            broker_account=account,
            account_id=account_id,
            symbol=root,
            trader_id__in=[link.trader_id for link in links],
        )
        .order_by("-pk")
        .values_list("trader_id", flat=True)
        .first()
    )
    return next((link for link in links if link.trader_id == last), None)


def _busy(
    broker: _SnapshotBroker,
    account: BrokerAccount,
    account_id: str,
    root: str,
    link: TraderSubAccount,
    quantity: int,
) -> str | None:
    """Why the pipeline may be acting on this position right now (then it is left alone), else None."""
    if Order.objects.filter(
        broker_account=account, account_id=account_id, symbol=root, status__in=IN_FLIGHT_STATUSES
    ).exists():
        return "orders of JustTrades are on their way or unsettled; it is looked at again next time."
    if Decision.objects.filter(
        trader=link.trader, status__in=(Decision.Status.PENDING, Decision.Status.EXECUTING)
    ).exists():
        return "its trader is executing a signal; it is looked at again next time."
    entry_side = "Buy" if quantity > 0 else "Sell"
    for order in broker.list_orders(account_id):
        if _root_of(order.symbol) != root or not order.is_open:
            continue
        if order.status == BrokerOrderStatus.PENDING or (
            order.action == entry_side and order.order_type == "Market"
        ):
            return "an entry is still working at the broker; it is looked at again next time."
    return None


def _flatten(
    log: _Log,
    broker: _SnapshotBroker,
    account: BrokerAccount,
    link: TraderSubAccount,
    root: str,
    quantity: int,
    now: datetime,
    window: str,
) -> None:
    account_id = link.subaccount.broker_id
    recent = ReconcileAction.objects.filter(
        broker_account=account,
        account_id=account_id,
        symbol=root,
        kind=Kind.FLATTEN,
        created_at__gte=now - FLATTEN_BACKOFF,
    ).exists()
    if recent:
        log.note(
            f"{root} on {account_id}: a flatten was tried less than {FLATTEN_BACKOFF} ago; waiting for it."
        )
        return
    recorder = link.trader.recorder
    reason = (
        f"Auto-flat: {quantity:+d} {root} was open after the cutoff of {recorder.name} "
        f"(trading window {window})."
    )
    if log.dry_run:
        log.step(Kind.FLATTEN, f"{reason} It would be liquidated.", account_id=account_id, symbol=root)
        return
    order = Order.objects.create(
        trader=link.trader,
        broker_account=account,
        account_id=account_id,
        account_name=link.subaccount.name,
        symbol=root,
        broker_symbol=recorder.symbol,
        client_id=_client_id(),
        plan_key="flatten",
        via_liquidation=True,
        role=Order.Role.EXIT,
        action="Sell" if quantity > 0 else "Buy",
        order_type=Order.Type.MARKET,
        quantity=abs(quantity),
    )
    sent = _submit(order, broker)
    log.step(Kind.FLATTEN, f"{reason} {_outcome(sent)}", account_id=account_id, symbol=root, order=sent)


def _protection_repair(
    log: _Log,
    broker: _SnapshotBroker,
    account: BrokerAccount,
    link: TraderSubAccount,
    root: str,
    quantity: int,
    average: Decimal,
    anchor: int,
    now: datetime,
) -> _Repair | None:
    """Compare the position's working exits at the broker with what its plan wants; None when they match."""
    account_id = link.subaccount.broker_id
    trader, recorder = link.trader, link.trader.recorder
    side = Side.of(quantity)
    if side is None:
        return None
    plan = plans.plan_protection(
        side=side,
        quantity=abs(quantity),
        average_price=average,
        contract=contract_for_symbol(recorder.symbol),
        settings=recorder_plan_settings(recorder, trader),
        multiplier=link.multiplier,
    )
    need_tp, need_sl = bool(plan.take_profits), bool(plan.stops)
    if not need_tp and not need_sl:
        return None
    exit_action = "Sell" if quantity > 0 else "Buy"
    listed = broker.list_orders(account_id)
    exits = [
        order
        for order in listed
        if order.is_open and order.action == exit_action and _root_of(order.symbol) == root
    ]
    take_profits = [order for order in exits if order.order_type == "Limit"]
    stops = [order for order in exits if order.order_type in STOP_TYPES]
    tp_cover = sum(order.quantity or 0 for order in take_profits)
    sl_cover = sum(order.quantity or 0 for order in stops)
    size = abs(quantity)
    if (not need_tp or tp_cover == size) and (not need_sl or sl_cover == size):
        return None
    where = f"{root} {quantity:+d} on {account_id}"
    ours = {
        order.broker_order_id: order
        for order in Order.objects.filter(
            broker_account=account,
            account_id=account_id,
            broker_order_id__in=[item.broker_order_id for item in take_profits + stops],
        )
    }
    if any(item.broker_order_id not in ours for item in take_profits + stops):
        log.note(
            f"{where}: protective orders placed outside JustTrades work on it, so none are added. "
            "Check them at the broker."
        )
        return None
    listed_ids = {order.broker_order_id for order in listed}
    if (
        Order.objects.filter(
            broker_account=account,
            account_id=account_id,
            symbol=root,
            status=Order.Status.WORKING,
            role__in=PROTECTION_ROLES,
        )
        .exclude(broker_order_id__in=listed_ids)
        .exists()
    ):
        log.note(
            f"{where}: the broker no longer lists one of its working exits; nothing is placed until it does."
        )
        return None
    if ReconcileAction.objects.filter(
        broker_account=account,
        account_id=account_id,
        symbol=root,
        kind=Kind.PLACE_PROTECTION,
        created_at__gte=now - REPLACE_BACKOFF,
        order__status=Order.Status.REJECTED,
    ).exists():
        log.note(
            f"{where}: the broker refused protection placed again less than {REPLACE_BACKOFF} ago; waiting."
        )
        return None
    wants = []
    if need_tp and tp_cover != size:
        wants.append(f"take-profits cover {tp_cover}")
    if need_sl and sl_cover != size:
        wants.append(f"stops cover {sl_cover}")
    why = f"The position is {quantity:+d} {root} but its working " + " and ".join(wants) + f" of {size}."
    open_ours = [ours[item.broker_order_id] for item in take_profits + stops]
    suffix = secrets.token_hex(3)
    at_broker = {order.broker_order_id: order for order in listed}
    broken = [
        (survivor, lost)
        for survivor, lost in _lost_partners(open_ours, at_broker)
        if (need_tp if lost.role == Order.Role.TAKE_PROFIT else need_sl)
    ]
    restored_tp = sum(survivor.quantity for survivor, lost in broken if lost.role == Order.Role.TAKE_PROFIT)
    restored_sl = sum(survivor.quantity for survivor, lost in broken if lost.role == Order.Role.STOP_LOSS)
    if (
        broken
        and (not need_tp or tp_cover + restored_tp == size)
        and (not need_sl or sl_cover + restored_sl == size)
    ):
        # The lost halves come back at their own prices. The survivors are cancelled and sent again with
        # them, so that each pair is one OCO at the broker rather than two orders only our sync pairs.
        return _Repair(why, [survivor for survivor, _ in broken], _pair_again(broken, suffix, at_broker))
    # The pairs cannot be mended one by one: replace the whole protection, cancelling the old orders first.
    fresh = [
        Order(
            decision_id=anchor,
            trader=trader,
            broker_account=account,
            account_id=account_id,
            account_name=link.subaccount.name,
            symbol=root,
            broker_symbol=recorder.symbol,
            client_id=_client_id(),
            plan_key=f"{intent.key}.{suffix}",
            sequence=number,
            oco_group=f"{intent.oco}.{suffix}" if intent.oco else "",
            role=intent.role.value,
            action=intent.action.value,
            order_type=intent.order_type.value,
            quantity=intent.quantity,
            price=intent.price,
            stop_price=intent.stop_price,
            trail_distance=intent.trail_distance,
        )
        for number, intent in enumerate(plan.intents, start=1)
    ]
    return _Repair(why, open_ours, fresh)


def _lost_partners(
    open_orders: Sequence[Order], at_broker: dict[str, BrokerOrder]
) -> list[tuple[Order, Order]]:
    """(survivor, lost partner) for our one-cancels-other pairs that lost one half and still work the other.

    Lost: refused, cancelled or never placed. The broker's word on the lost half counts before ours (a dry
    run has not taken the broker's statuses yet); a half that filled is no loss (its partner is cancelled).
    """
    pairs = []
    for order in open_orders:
        if not order.oco_group or order.decision_id is None:
            continue
        other_role = Order.Role.STOP_LOSS if order.role == Order.Role.TAKE_PROFIT else Order.Role.TAKE_PROFIT
        partner = (
            Order.objects.filter(
                decision_id=order.decision_id,
                account_id=order.account_id,
                oco_group=order.oco_group,
                role=other_role,
            )
            .exclude(pk=order.pk)
            .order_by("-pk")
            .first()
        )
        if partner is None:
            continue
        status = partner.status
        seen = at_broker.get(partner.broker_order_id or "")
        if status == Order.Status.WORKING and seen is not None:
            status = ORDER_STATUS_FROM_BROKER.get(seen.status, status)
        if status in LOST_STATUSES:
            pairs.append((order, partner))
    return pairs


def _copy(original: Order, *, quantity: int, oco_group: str, suffix: str, seen: BrokerOrder | None) -> Order:
    """A new order like `original` (fresh client id), at the broker's current prices when it reports them."""
    price, stop_price = original.price, original.stop_price
    if seen is not None and seen.order_type == original.order_type:
        # A trailing stop moves at the broker: keep where it stands now, not where it started.
        price = seen.price if seen.price is not None else price
        stop_price = seen.stop_price if seen.stop_price is not None else stop_price
    return Order(
        decision_id=original.decision_id,
        signal_id=original.signal_id,
        trader_id=original.trader_id,
        broker_account_id=original.broker_account_id,
        account_id=original.account_id,
        account_name=original.account_name,
        symbol=original.symbol,
        broker_symbol=original.broker_symbol,
        client_id=_client_id(),
        plan_key=f"{original.plan_key.split('.')[0][:9]}.{suffix}",
        sequence=original.sequence,
        oco_group=oco_group,
        role=original.role,
        action=original.action,
        order_type=original.order_type,
        quantity=quantity,
        price=price,
        stop_price=stop_price,
        trail_distance=original.trail_distance,
    )


def _pair_again(
    pairs: Sequence[tuple[Order, Order]], suffix: str, at_broker: dict[str, BrokerOrder]
) -> list[Order]:
    """Both halves of each broken pair as new orders in a new group: they go out as one OCO pair."""
    fresh = []
    for survivor, lost in pairs:
        group = f"{survivor.oco_group.split('.')[0][:9]}.{suffix}"
        halves = [
            _copy(survivor, quantity=survivor.quantity, oco_group=group, suffix=suffix,
                  seen=at_broker.get(survivor.broker_order_id or "")),
            _copy(lost, quantity=survivor.quantity, oco_group=group, suffix=suffix, seen=None),
        ]  # fmt: skip
        fresh += sorted(halves, key=lambda order: order.role != Order.Role.TAKE_PROFIT)
    return fresh


def _carry_out(log: _Log, broker: _SnapshotBroker, account_id: str, root: str, repair: _Repair) -> None:
    """Cancel the old exits, confirm they are gone, then place the new ones (a dry run only reports)."""
    if log.dry_run:
        for order in repair.cancel:
            log.step(
                Kind.CANCEL_REPLACED,
                f"{repair.why} Would cancel {_describe(order)} before placing new protection.",
                account_id=account_id,
                symbol=root,
                order=order,
            )
        for order in repair.place:
            log.step(
                Kind.PLACE_PROTECTION,
                f"{repair.why} Would place {_describe(order)}.",
                account_id=account_id,
                symbol=root,
            )
        return
    for order in repair.cancel:
        try:
            broker.cancel_order(order.broker_order_id or "")
        except (OrderRejected, OrderOutcomeUnknown) as error:
            # The order changed meanwhile (filled, already cancelled): look again next time, never stack.
            log.note(
                f"{_describe(order)} could not be cancelled ({error.message}); nothing new is placed now."
            )
            return
    if repair.cancel:
        # A cancel's answer proves nothing: read the orders again; place nothing while an old one works.
        broker.forget()
        now_at_broker = {order.broker_order_id: order for order in broker.list_orders(account_id)}
        for order in repair.cancel:
            seen = now_at_broker.get(order.broker_order_id or "")
            if seen is not None and seen.is_open:
                log.note(
                    f"{_describe(order)} still works after its cancel; nothing is placed until it is gone."
                )
                return
            status = ORDER_STATUS_FROM_BROKER.get(seen.status) if seen is not None else Order.Status.CANCELLED
            if status == Order.Status.FILLED:
                log.note(f"{_describe(order)} filled before its cancel; the position is looked at next time.")
                return
            Order.objects.filter(pk=order.pk, status=Order.Status.WORKING).update(
                status=Order.Status.CANCELLED,
                error="Cancelled by reconciliation: replaced by new protection.",
                cancel_reason=Order.CancelReason.RECONCILIATION,
            )
            log.step(
                Kind.CANCEL_REPLACED,
                f"{repair.why} Cancelled {_describe(order)} before placing new protection.",
                account_id=account_id,
                symbol=root,
                order=order,
            )
    with transaction.atomic():
        for order in repair.place:
            order.save(force_insert=True)
    for order in repair.place:
        order.refresh_from_db()
        if order.status != Order.Status.PENDING:
            continue  # sent with its OCO partner
        partner = _pending_partner(order, repair.place)
        sent = _submit(order, broker, oco_partner=partner)
        halves = [sent, Order.objects.get(pk=partner.pk)] if partner else [sent]
        for placed in halves:
            log.step(
                Kind.PLACE_PROTECTION,
                f"{repair.why} Placed {_describe(placed)}{' as an OCO pair' if partner else ''}. "
                f"{_outcome(placed)}",
                account_id=account_id,
                symbol=root,
                order=placed,
            )
        if partner and sent.status == Order.Status.REJECTED:
            _stop_alone(log, broker, account_id, root, halves)


def _stop_alone(log: _Log, broker: _SnapshotBroker, account_id: str, root: str, halves: list[Order]) -> None:
    """After the broker refused a pair that replaced cancelled protection, place its stop on its own.

    The position must not be left without the stop it had. The take-profit does not go alone: with a stop
    that is not its OCO partner, two quick prices could fill both and reverse the position.
    """
    for half in halves:
        if half.role != Order.Role.STOP_LOSS:
            continue
        alone = _copy(
            half, quantity=half.quantity, oco_group=half.oco_group, suffix=secrets.token_hex(3), seen=None
        )
        alone.save(force_insert=True)
        alone = _submit(alone, broker)
        log.step(
            Kind.PLACE_PROTECTION,
            f"The broker refused the pair, so {_describe(alone)} went out on its own. {_outcome(alone)}",
            account_id=account_id,
            symbol=root,
            order=alone,
        )


def _pending_partner(order: Order, batch: Sequence[Order]) -> Order | None:
    """The other half of `order`'s take-profit/stop pair in the same batch, when it still waits to be sent."""
    if not order.oco_group:
        return None
    for other in batch:
        if (
            other.pk != order.pk
            and other.oco_group == order.oco_group
            and other.role != order.role
            and (other.action, other.quantity) == (order.action, order.quantity)
        ):
            other.refresh_from_db()
            return other if other.status == Order.Status.PENDING else None
    return None


# --- sending ------------------------------------------------------------------------------------------------


def _client_id() -> str:
    return f"jt-{uuid.uuid4().hex}"


def _submit(order: Order, broker: Broker, *, oco_partner: Order | None = None) -> Order:
    """Send a stored order (with its OCO partner) through the pipeline's order_submit: claimed, sent once."""
    try:
        if oco_partner is not None:
            return order_submit(order=order, broker=broker, oco_partner=oco_partner)
        return order_submit(order=order, broker=broker)
    except RetryLater as retry:
        # Certainly not placed; the next run sees the position still lacking and tries again.
        ids = [order.pk] + ([oco_partner.pk] if oco_partner is not None else [])
        Order.objects.filter(pk__in=ids, status=Order.Status.PENDING).update(
            status=Order.Status.FAILED,
            error=f"Not sent: {retry.message}",
            cancel_reason=Order.CancelReason.NOT_SENT,
        )
        order.refresh_from_db()
        return order


def _outcome(order: Order) -> str:
    """What became of a sent order, as a sentence (the broker's words verbatim when it refused)."""
    if order.status == Order.Status.WORKING:
        return f"It is working as order {order.broker_order_id}."
    if order.status == Order.Status.FILLED:
        return f"It filled as order {order.broker_order_id}."
    if order.status == Order.Status.REJECTED:
        return f"The broker refused it: {order.error}"
    if order.status == Order.Status.UNKNOWN:
        return "Its outcome is unknown: it is looked up at the broker, never sent again."
    return order.error or f"It is {order.get_status_display().lower()}."
