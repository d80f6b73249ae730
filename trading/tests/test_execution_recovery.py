"""Recovery paths of the execution pipeline: unknown outcomes, lapsed leases and protection put back."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from trading.brokers import registry
from trading.brokers.base import OrderOutcomeUnknown, OrderRequest, check_oco_pair
from trading.brokers.paper import PaperBroker
from trading.models import Decision, Order, PaperOrder, PaperPosition
from trading.services.decisions import DECISION_LEASE
from trading.services.execution import decision_plan
from trading.services.killswitches import killswitch_set
from trading.services.orders import RESTORED_SEQUENCE
from trading.services.prices import price_record
from trading.services.sweep import signals_sweep
from trading.tests.execution_support import *  # noqa: F403  fixtures
from trading.tests.execution_support import decisions_of, make_trader, orders_of, stored_signal
from trading.tests.factories import RecorderFactory
from trading.tests.fake_tradovate import DEMO_ACCOUNT_NAME

pytestmark = pytest.mark.django_db


def es_recorder(owner, **settings):
    values = {"tp_targets": [{"value": 8, "trim": None}], "sl_enabled": True, "sl_amount": Decimal(8)}
    return RecorderFactory(owner=owner, symbol="ES", **{**values, **settings})


def paper_position(trader) -> int:
    row = PaperPosition.objects.filter(broker_account=trader.account, root="ES").first()
    return row.quantity if row else 0


def working_paper_orders(trader) -> list[tuple[str, int]]:
    return sorted(
        PaperOrder.objects.filter(broker_account=trader.account, status="working").values_list(
            "order_type", "quantity"
        )
    )


def process(task_queue, signal) -> None:
    task_queue.publish("signal_process", signal.pk)
    task_queue.run()


def a_second():
    return timezone.now() + timedelta(seconds=1)


def test_while_an_old_stop_cannot_be_cancelled_nothing_new_is_sent_and_the_decision_retries(
    task_queue, owner, monkeypatch
):
    recorder = es_recorder(owner)
    trader = make_trader(recorder)
    process(task_queue, stored_signal(recorder, price=Decimal("5000")))

    class CancelTimesOut(PaperBroker):
        def cancel_order(self, broker_order_id):
            raise OrderOutcomeUnknown("The cancel timed out.")

    monkeypatch.setattr(registry, "broker_for_account", lambda account, **options: CancelTimesOut(account))
    add = stored_signal(recorder, price=Decimal("5000"), received_at=a_second())
    process(task_queue, add)

    [decision] = decisions_of(add)
    assert [object_id for object_id, _ in task_queue.retries] == [decision.pk]
    assert {order.status for order in orders_of(add)} == {"pending"}
    assert paper_position(trader) == 1
    assert working_paper_orders(trader) == [("Limit", 1), ("Stop", 1)]


def test_a_worker_whose_lease_was_taken_over_sends_nothing(
    decisions_as_tasks, task_queue, owner, monkeypatch
):
    recorder = es_recorder(owner)
    trader = make_trader(recorder)
    signal = stored_signal(recorder)
    task_queue.publish("signal_process", signal.pk)
    task_queue.run_one()
    real_plan = decision_plan

    def plan_then_stall(decision, token, now):
        planned = real_plan(decision, token, now)
        # The worker stalls past its lease; another claims the decision.
        Decision.objects.filter(pk=decision.pk).update(claim_token=None, lease_expires_at=None)
        return planned

    monkeypatch.setattr("trading.services.execution.decision_plan", plan_then_stall)
    assert task_queue.run_one() == "not-claimed"

    assert PaperOrder.objects.count() == 0
    assert paper_position(trader) == 0
    assert set(Order.objects.values_list("status", flat=True)) == {"pending"}


def test_the_sweeper_hands_a_dead_workers_decision_on_within_half_a_minute(task_queue, owner):
    recorder = es_recorder(owner)
    make_trader(recorder)
    signal = stored_signal(recorder)
    task_queue.publish("signal_process", signal.pk)
    task_queue.run_one()
    [decision] = decisions_of(signal)
    claimed = timezone.now()
    Decision.objects.filter(pk=decision.pk).update(
        status=Decision.Status.EXECUTING, lease_expires_at=claimed + DECISION_LEASE
    )
    task_queue.messages.clear()

    with time_machine.travel(claimed + timedelta(seconds=5), tick=False):
        assert signals_sweep().decisions == 0  # a live worker's lease is respected
    with time_machine.travel(claimed + timedelta(seconds=30), tick=False):
        assert signals_sweep().decisions == 1


def test_an_entry_the_broker_never_took_fails_its_protection_and_sends_nothing_more(
    task_queue, owner, faulty_broker
):
    recorder = es_recorder(owner, initial_position_size=2, tp_targets=[{"value": 4, "trim": 1}, {"value": 8}])
    trader = make_trader(recorder)
    faulty_broker.unknown(sent=False)
    signal = stored_signal(recorder)
    process(task_queue, signal)
    [decision] = decisions_of(signal)
    decision.refresh_from_db()
    assert decision.status == Decision.Status.UNSETTLED
    statuses = {o.plan_key: o.status for o in orders_of(signal)}
    assert (statuses["sl1"], statuses["entry2"], statuses["sl2"]) == ("unknown", "pending", "pending")

    with time_machine.travel(timezone.now() + timedelta(seconds=45), tick=False):
        signals_sweep()
    task_queue.run()

    orders = {order.plan_key: order.status for order in orders_of(signal)}
    assert set(orders) == {"entry1", "tp1", "sl1", "entry2", "tp2", "sl2"}
    assert set(orders.values()) == {"failed"}
    decision.refresh_from_db()
    assert decision.status == Decision.Status.FAILED
    assert PaperOrder.objects.count() == 0
    assert paper_position(trader) == 0


def test_protection_of_an_unknown_entry_is_not_sent_after_a_later_signal_was_acted_on(
    task_queue, owner, faulty_broker
):
    recorder = es_recorder(owner, initial_position_size=2, tp_targets=[{"value": 4, "trim": 1}, {"value": 8}])
    trader = make_trader(recorder)
    faulty_broker.unknown(sent=True)  # the first bracket is placed; the second waits for it to be settled
    entry = stored_signal(recorder, price=Decimal("5000"))
    process(task_queue, entry)
    # Short of the first target (5001), so the close, not the take-profit, flattens the position.
    close = stored_signal(recorder, action="close", price=Decimal("5000.25"), received_at=a_second())
    process(task_queue, close)
    assert paper_position(trader) == 0
    assert [order.via_liquidation for order in orders_of(close)] == [True]

    with time_machine.travel(timezone.now() + timedelta(seconds=45), tick=False):
        signals_sweep()
    task_queue.run()

    orders = {order.plan_key: order.status for order in orders_of(entry)}
    assert orders["entry1"] == "filled"
    assert orders["sl1"] == "cancelled"  # with the position it protected
    assert (orders["entry2"], orders["tp2"], orders["sl2"]) == ("failed", "failed", "failed")
    assert paper_position(trader) == 0
    assert working_paper_orders(trader) == []


def test_a_liquidation_of_unknown_outcome_on_a_flat_position_is_settled_without_a_second_close(
    task_queue, owner, faulty_broker
):
    recorder = es_recorder(owner)
    trader = make_trader(recorder)
    process(task_queue, stored_signal(recorder, price=Decimal("5000")))
    faulty_broker.unknown(sent=True)  # the liquidation took effect; its answer was lost
    close = stored_signal(recorder, action="close", price=Decimal("5001"), received_at=a_second())
    process(task_queue, close)
    assert paper_position(trader) == 0
    calls = len(faulty_broker.calls)

    with time_machine.travel(timezone.now() + timedelta(seconds=45), tick=False):
        assert signals_sweep().orders_to_settle == 1
    task_queue.run()

    [exit_order] = orders_of(close)
    assert exit_order.status == "cancelled"
    assert "flat" in exit_order.error
    assert len(faulty_broker.calls) == calls  # nothing was sent again
    assert decisions_of(close)[0].status == Decision.Status.EXECUTED


def test_an_add_blocked_by_a_kill_switch_on_its_retry_puts_the_old_protection_back_once(
    decisions_as_tasks, task_queue, owner, faulty_broker
):
    recorder = es_recorder(owner)
    trader = make_trader(recorder)
    process(task_queue, stored_signal(recorder, price=Decimal("5000")))
    add = stored_signal(recorder, price=Decimal("5000"), received_at=a_second())
    faulty_broker.unavailable()  # the add's entry: the broker is down after the old protection was cancelled
    process(task_queue, add)
    assert working_paper_orders(trader) == []
    [decision] = decisions_of(add)

    killswitch_set(engaged=True, account=trader.account, reason="runaway")
    for _ in range(2):  # Celery's retry, delivered twice
        Decision.objects.filter(pk=decision.pk).update(
            status=Decision.Status.EXECUTING, lease_expires_at=None
        )
        task_queue.publish("trader_signal_execute", decision.pk)
        task_queue.run()

    assert paper_position(trader) == 1
    assert working_paper_orders(trader) == [("Limit", 1), ("Stop", 1)]
    restored = Order.objects.filter(decision=decision, sequence__gte=RESTORED_SEQUENCE)
    assert sorted(restored.values_list("role", "status")) == [
        ("stop_loss", "working"),
        ("take_profit", "working"),
    ]
    decision.refresh_from_db()
    assert "kill switch" in decision.reason


def test_protection_replaced_by_a_decision_is_linked_to_it_and_put_back_by_the_link_not_the_words(
    decisions_as_tasks, task_queue, owner, faulty_broker
):
    recorder = es_recorder(owner)
    trader = make_trader(recorder)
    process(task_queue, stored_signal(recorder, price=Decimal("5000")))
    add = stored_signal(recorder, price=Decimal("5000"), received_at=a_second())
    faulty_broker.unavailable()
    process(task_queue, add)
    [decision] = decisions_of(add)
    replaced = Order.objects.filter(replaced_by=decision)
    assert sorted(replaced.values_list("role", "cancel_reason")) == [
        ("stop_loss", Order.CancelReason.REPLACED),
        ("take_profit", Order.CancelReason.REPLACED),
    ]
    replaced.update(error="Cancelled (reworded for people).")  # code never reads the words

    killswitch_set(engaged=True, account=trader.account, reason="runaway")
    Decision.objects.filter(pk=decision.pk).update(status=Decision.Status.EXECUTING, lease_expires_at=None)
    task_queue.publish("trader_signal_execute", decision.pk)
    task_queue.run()

    assert working_paper_orders(trader) == [("Limit", 1), ("Stop", 1)]
    blocked_entry = Order.objects.get(decision=decision, role=Order.Role.ENTRY)
    assert (blocked_entry.status, blocked_entry.cancel_reason) == (
        Order.Status.FAILED,
        Order.CancelReason.NOT_SENT,
    )


# --- one-cancels-other pairs outside the bracket ------------------------------------------------------------


def test_a_take_profit_and_stop_pair_outside_the_bracket_is_one_oco_at_the_paper_broker(task_queue, owner):
    recorder = es_recorder(owner, initial_position_size=2, tp_targets=[{"value": 4, "trim": 1}, {"value": 8}])
    trader = make_trader(recorder)
    signal = stored_signal(recorder, price=Decimal("5000"))
    process(task_queue, signal)

    orders = {order.plan_key: order for order in orders_of(signal)}
    for take_profit, stop in (("tp1", "sl1"), ("tp2", "sl2")):
        rows = PaperOrder.objects.filter(
            pk__in=[int(orders[take_profit].broker_order_id), int(orders[stop].broker_order_id)]
        )
        groups = set(rows.values_list("oco_group", flat=True))
        assert len(groups) == 1
        assert "" not in groups
    price_record(owner=owner, symbol="ES", price=Decimal("5001"))  # tp1 fills
    assert PaperOrder.objects.get(pk=int(orders["sl1"].broker_order_id)).status == "cancelled"
    assert paper_position(trader) == 1


def test_the_tradovate_adapter_places_an_oco_pair_in_one_placeoco_request():
    from trading.brokers.tradovate import TradovateBroker, new_session
    from trading.tests.fake_tradovate import running_fake_tradovate
    from trading.tests.test_tradovate_adapter import ACCOUNT, limit_sell, make_client

    stop = OrderRequest(
        client_id="jt-sl-9",
        account_id=ACCOUNT,
        account_spec=DEMO_ACCOUNT_NAME,
        symbol="ESZ6",
        action="Sell",
        order_type="Stop",
        quantity=1,
        stop_price=Decimal("4990.50"),
        time_in_force="GTC",
    )
    with running_fake_tradovate() as fake:
        session = new_session()
        try:
            broker = TradovateBroker(make_client(fake, session))
            placed = broker.place_oco(limit_sell("jt-tp-9", "5010.25"), stop)
        finally:
            session.close()

        [body] = fake.bodies("/order/placeoco")
        assert body["clOrdId"] == "jt-tp-9"
        assert body["other"] == {
            "action": "Sell",
            "orderType": "Stop",
            "stopPrice": 4990.5,
            "timeInForce": "GTC",
            "clOrdId": "jt-sl-9",
        }
        take_profit, other = fake.order(placed.order_id), fake.order(placed.other_id)
        assert take_profit["ocoId"] == other["id"]
        assert other["ocoId"] == take_profit["id"]
        assert fake.requests_to("/order/placeorder") == []


def test_an_oco_pair_must_be_two_exits_of_one_position():
    base = {"account_id": "1", "account_spec": "A", "symbol": "ESZ6", "order_type": "Market", "quantity": 1}
    with pytest.raises(ValueError, match="same account"):
        check_oco_pair(
            OrderRequest(client_id="a", action="Sell", **base),
            OrderRequest(client_id="b", action="Buy", **base),
        )
