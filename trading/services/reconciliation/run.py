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
from datetime import datetime

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from trading.brokers import registry
from trading.brokers.base import (
    Broker,
    BrokerError,
    BrokerNeedsAttention,
)
from trading.claims import account_lease_release, account_lease_take
from trading.models import (
    BrokerAccount,
    Order,
    Position,
    ReconcileRun,
    Trader,
)
from trading.services.broker_accounts import (
    SELF_HEALING_REASONS,
    broker_account_mark_active,
    broker_account_mark_needs_attention,
)
from trading.services.killswitches import killswitch_reason
from trading.services.reconciliation.broker import BrokerSnapshot, broker_positions
from trading.services.reconciliation.record import (
    LOCK_SECONDS,
    RUN_RETENTION,
    Kind,
    ReconcileLog,
    ReconcileReport,
)
from trading.services.reconciliation.repairs import position_repair
from trading.services.reconciliation.settle import account_sync_preview, account_sync_step, unknown_settle

logger = logging.getLogger(__name__)


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
    log = ReconcileLog(account, trigger=trigger, dry_run=dry_run, started_at=now)
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


def _reconcile(
    log: ReconcileLog, account: BrokerAccount, broker: Broker | None, now: datetime
) -> ReconcileReport:
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
        snapshot = BrokerSnapshot(broker, dry_run=dry_run)
        account_ids = _account_ids(account)
        for account_id in account_ids:
            unknown_settle(log, snapshot, account, account_id, now)
        if dry_run:
            for account_id in account_ids:
                account_sync_preview(log, snapshot, account, account_id)
        else:
            account_sync_step(log, snapshot, account)
        blocked = killswitch_reason(user_id=account.owner_id, account_id=account.pk)
        changes = snapshot.changes
        for account_id in account_ids:
            for root, (quantity, average) in sorted(broker_positions(snapshot, account_id).items()):
                position_repair(log, snapshot, account, account_id, root, quantity, average, now, blocked)
        if snapshot.changes > changes:
            # What this run sent may have filled at once (a liquidation, a paper order): record it now.
            account_sync_step(log, snapshot, account)
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
