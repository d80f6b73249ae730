"""Orders at the broker: send a group in order, settle unknown outcomes, restore protection, liquidate."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from trading.brokers import registry
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
from trading.errors import RetryLater
from trading.models import (
    BrokerAccount,
    Decision,
    Order,
)
from trading.services import queue
from trading.services.broker_accounts import broker_account_mark_needs_attention
from trading.services.contracts import contract_root
from trading.services.decisions import decision_refresh
from trading.symbols import SymbolError

logger = logging.getLogger(__name__)


# An entry or exit leads its sub-account's group: the orders after it wait for its outcome.
LEADING_ROLES = (Order.Role.ENTRY, Order.Role.EXIT)
# What rests around a position: cancelled when new orders replace them, or when the position closes.
RESTING_ROLES = (Order.Role.TAKE_PROFIT, Order.Role.STOP_LOSS, Order.Role.AVERAGE_DOWN)
# Protection proper: what reconciliation puts back when a position lacks it (average-downs are not).
PROTECTION_ROLES = (Order.Role.TAKE_PROFIT, Order.Role.STOP_LOSS)
# Our status of an order from the broker's.
ORDER_STATUS_FROM_BROKER = {
    BrokerOrderStatus.PENDING: Order.Status.WORKING,
    BrokerOrderStatus.WORKING: Order.Status.WORKING,
    BrokerOrderStatus.FILLED: Order.Status.FILLED,
    BrokerOrderStatus.CANCELLED: Order.Status.CANCELLED,
    BrokerOrderStatus.REJECTED: Order.Status.REJECTED,
}


def broker_position(broker: Broker, account_id: str, root: str) -> tuple[int, Decimal | None]:
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


def new_client_id() -> str:
    return f"jt-{uuid.uuid4().hex}"


# Copies of protection put back after the order that replaced it was refused sort after the plan's own orders.
RESTORED_SEQUENCE = 10_000
_STOPPING = (Order.Status.REJECTED, Order.Status.FAILED)


def order_group_submit(
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
        if order.role not in LEADING_ROLES:
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
        result = order_submit(order=order, broker=broker, oco_partner=oco_partner(order, pending))
        if result.role in LEADING_ROLES and result.status == Order.Status.UNKNOWN:
            return  # as above: settled first
        if result.role in LEADING_ROLES and result.status in _STOPPING:
            _group_stop(broker, group, result, renew)
            return


def oco_partner(order: Order, pending: Sequence[Order]) -> Order | None:
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
    if stopper.status == Order.Status.FAILED and stopper.cancel_reason == Order.CancelReason.NOT_SENT:
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
        status=Order.Status.FAILED, error=reason, cancel_reason=Order.CancelReason.NOT_SENT
    )


def _replaced_by(decision_id: int | None) -> Q:
    """Orders cancelled to make way for the orders of this decision."""
    return Q(
        status=Order.Status.CANCELLED, cancel_reason=Order.CancelReason.REPLACED, replaced_by_id=decision_id
    )


def _cancel_working(broker: Broker, sample: Order, renew: Callable[[], None]) -> None:
    """Cancel the working exits and average-downs of the position before new ones replace them."""
    working = Order.objects.filter(
        broker_account_id=sample.broker_account_id,
        account_id=sample.account_id,
        symbol=sample.symbol,
        status=Order.Status.WORKING,
        role__in=RESTING_ROLES,
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
        # The link names the decision, so its protection can be put back if its entry or exit is refused.
        Order.objects.filter(pk=order.pk, status=Order.Status.WORKING).update(
            status=Order.Status.CANCELLED,
            error=f"Cancelled: replaced by the orders of decision {sample.decision_id}.",
            cancel_reason=Order.CancelReason.REPLACED,
            replaced_by_id=sample.decision_id,
        )


def _protection_restore(broker: Broker, stopper: Order, renew: Callable[[], None]) -> None:
    """Send again the take-profits and stops `stopper`'s decision cancelled: its entry or exit was refused.

    The position is what it was before that decision, so the protection it had must be back on the book.
    Copies (new client ids, same prices) belong to that decision; their plan keys name the original, so a
    retry finds them made and sends only what is still pending. Average-downs are not put back: they would
    grow the position, which the refusal (or a kill switch) just said not to do.
    """
    replaced = Order.objects.filter(
        _replaced_by(stopper.decision_id),
        broker_account_id=stopper.broker_account_id,
        account_id=stopper.account_id,
        symbol=stopper.symbol,
        role__in=PROTECTION_ROLES,
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
                    client_id=new_client_id(),
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
        order_submit(order=copy, broker=broker, oco_partner=oco_partner(copy, copies))


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
        time_in_force="Day" if order.role in LEADING_ROLES else "GTC",
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
            status=Order.Status.FAILED, error=f"Not sent: {error}", cancel_reason=Order.CancelReason.NOT_SENT
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
        account_mark_needs_attention(order.broker_account_id, error)
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
            status=Order.Status.CANCELLED,
            error="Nothing to close: the position was already flat.",
            cancel_reason=Order.CancelReason.ALREADY_FLAT,
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
            role__in=RESTING_ROLES,
        ).update(status=Order.Status.CANCELLED, cancel_reason=Order.CancelReason.LIQUIDATED)


def _record_outcome(ids: Sequence[int], status: str, text: str) -> None:
    Order.objects.filter(pk__in=ids, status=Order.Status.SUBMITTING).update(status=status, error=text)


def account_mark_needs_attention(account_id: int, error: BrokerNeedsAttention) -> None:
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
    broker = broker or registry.broker_for_account(order.broker_account)
    if order.via_liquidation:
        _liquidation_settle(order, broker)
    else:
        _order_look_up(order, broker)
    order.refresh_from_db()
    if order.decision_id and order.status != Order.Status.UNKNOWN:
        if order.role in LEADING_ROLES:
            _decision_resume_after(order)
        decision_refresh(order.decision_id)
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
        status = ORDER_STATUS_FROM_BROKER.get(found.status)
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


def later_orders_exist(order: Order) -> bool:
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
        _replaced_by(order.decision_id),
        broker_account_id=order.broker_account_id,
        account_id=order.account_id,
    )
    # A liquidation that found the position flat did its job; any other cancelled entry never filled.
    placed = order.status in (Order.Status.WORKING, Order.Status.FILLED) or (
        order.via_liquidation and order.status == Order.Status.CANCELLED
    )
    refused = order.status in _STOPPING
    if not waiting.exists() and (placed or not refused or not replaced.exists()):
        return
    if later_orders_exist(order):
        waiting.update(
            status=Order.Status.FAILED,
            error="Not sent: a later signal was acted on before this order's entry was settled.",
            cancel_reason=Order.CancelReason.NOT_SENT,
        )
        return
    if not placed:
        waiting.update(
            status=Order.Status.FAILED,
            error=_not_sent_after(order),
            cancel_reason=Order.CancelReason.NOT_SENT,
        )
        if not refused or not replaced.exists():
            return
    resumed = Decision.objects.filter(pk=order.decision_id, status=Decision.Status.UNSETTLED).update(
        status=Decision.Status.PENDING, claim_token=None, lease_expires_at=None, finished_at=None
    )
    if resumed:
        queue.task_publish_on_commit(queue.TRADER_SIGNAL_EXECUTE, [order.decision_id])


def _liquidation_settle(order: Order, broker: Broker) -> None:
    """Settle a liquidation whose outcome is unknown from the position: flat is done, else close it again.

    A liquidation only ever closes what is there, so sending it again cannot open a position, unless a later
    signal already opened one: then it is left to reconciliation rather than closing that.
    """
    if order.decision_id and later_orders_exist(order):
        Order.objects.filter(pk=order.pk, status=Order.Status.UNKNOWN).update(
            status=Order.Status.FAILED,
            error="Its outcome stayed unknown and a later signal was acted on: the position is left to "
            "reconciliation.",
        )
        return
    try:
        quantity, _ = broker_position(broker, order.account_id, order.symbol)
    except BrokerError as error:
        logger.info("Liquidation %s stays unknown: %s", order.pk, error.message)
        return
    if quantity == 0:
        Order.objects.filter(pk=order.pk, status=Order.Status.UNKNOWN).update(
            status=Order.Status.CANCELLED,
            error="The position is flat: the liquidation took effect or nothing was left to close.",
            cancel_reason=Order.CancelReason.ALREADY_FLAT,
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
