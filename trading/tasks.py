"""Celery tasks of the trading pipeline: thin wrappers that take ids and call trading.services.

Every task here is idempotent: claims and conditional updates make a re-delivered or doubled message harmless.
Routed to the `orders` queue by CELERY_TASK_ROUTES ("trading.tasks.*"), reconciliation to `reconcile`.
"""

from celery import shared_task

from trading.claims import WAIT_FOR_EARLIER_SECONDS
from trading.errors import RetryLater, WaitForEarlier
from trading.services import decisions, execution, orders, queue, signals, sweep
from trading.services.reconciliation.run import account_reconcile, accounts_to_reconcile, reconcile_runs_prune


@shared_task(name=queue.SIGNAL_PROCESS)
def signal_process(signal_id: int) -> str:
    """Run the signal's recorder: its signals in arrival order, each judged and its orders sent at once."""
    return signals.signal_process(signal_id=signal_id)


@shared_task(bind=True, name=queue.TRADER_SIGNAL_EXECUTE, max_retries=len(execution.RETRY_BACKOFF))
def trader_signal_execute(self, decision_id: int) -> str:
    """Plan and send one trader's orders for one signal; retried with backoff while the broker is down."""
    try:
        return execution.trader_signal_execute(decision_id=decision_id)
    except WaitForEarlier:
        # Not a failure: a fresh message, so the broker's retry budget is left whole.
        trader_signal_execute.apply_async(args=[decision_id], countdown=WAIT_FOR_EARLIER_SECONDS)
        return "waiting"
    except RetryLater as retry:
        if self.request.retries >= self.max_retries:
            decisions.decision_abandon(
                decision_id=decision_id, reason=f"the broker stayed unavailable ({retry.message})"
            )
            return "abandoned"
        countdown = retry.countdown or execution.RETRY_BACKOFF[self.request.retries]
        raise self.retry(countdown=countdown) from None


@shared_task(name=queue.ORDER_SETTLE)
def order_settle(order_id: int) -> str:
    """Look up an order whose outcome is unknown at the broker, without sending it again."""
    order = orders.order_settle(order_id=order_id)
    return order.status if order is not None else "missing"


@shared_task(name="trading.tasks.signals_sweep")
def signals_sweep() -> dict:
    """Re-queue signals and decisions left behind by a lost message or a dead worker."""
    report = sweep.signals_sweep()
    return {
        "signals": report.signals,
        "decisions": report.decisions,
        "orders_to_settle": report.orders_to_settle,
    }


# Queued reconciliations older than this are dropped: the next beat queues a fresh one.
RECONCILE_EXPIRES_SECONDS = 55


@shared_task(name="trading.tasks.reconcile_all")
def reconcile_all() -> int:
    """Queue one reconciliation per account in use, so a slow account never holds back the others."""
    account_ids = accounts_to_reconcile()
    for account_id in account_ids:
        reconcile_account.apply_async(args=[account_id], expires=RECONCILE_EXPIRES_SECONDS)
    reconcile_runs_prune()
    return len(account_ids)


@shared_task(name="trading.tasks.reconcile_account")
def reconcile_account(account_id: int) -> dict:
    """Bring one broker account in line with its broker and repair missing protection."""
    return account_reconcile(account_id=account_id).as_dict()
