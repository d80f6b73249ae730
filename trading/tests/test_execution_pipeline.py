"""A stored signal to orders, fills and positions on the paper broker; how the pipeline copes with faults."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from trading.brokers.base import OrderRequest
from trading.brokers.paper import PaperBroker, paper_account_id
from trading.models import (
    Decision,
    Order,
    PaperOrder,
    PaperPosition,
    Position,
    RecorderPosition,
    Signal,
    Trader,
)
from trading.services import queue
from trading.services.decisions import decision_abandon
from trading.services.demo import demo_trading_seed
from trading.services.execution import decision_plan, trader_signal_execute
from trading.services.killswitches import killswitch_set
from trading.services.orders import order_settle
from trading.services.prices import price_record
from trading.services.signals import signal_process
from trading.services.sweep import signals_sweep
from trading.services.sync import account_sync
from trading.tests.execution_support import *  # noqa: F403  fixtures
from trading.tests.execution_support import decisions_of, make_trader, orders_of, stored_signal
from trading.tests.factories import RecorderFactory, UserFactory

pytestmark = pytest.mark.django_db


class WorkerKilled(BaseException):
    """A worker process dying: not an Exception, so no handler of ours sees it."""


@pytest.fixture
def recorder(owner):
    """An ES recorder with one take-profit 8 ticks away and a stop 8 ticks away."""
    return RecorderFactory(
        owner=owner,
        symbol="ES",
        tp_targets=[{"value": 8, "trim": None}],
        sl_enabled=True,
        sl_amount=Decimal(8),
    )


def process(task_queue, signal: Signal) -> None:
    task_queue.publish("signal_process", signal.pk)
    task_queue.run()


def paper_position(trader) -> int:
    row = PaperPosition.objects.filter(broker_account=trader.account, root="ES").first()
    return row.quantity if row else 0


# --- the path of one signal ---------------------------------------------------------------------------------


def test_a_buy_becomes_one_bracket_entry_with_take_profit_and_stop_on_the_paper_account(task_queue, recorder):
    trader = make_trader(recorder)
    signal = stored_signal(recorder, price=Decimal("5000.00"))

    process(task_queue, signal)

    signal.refresh_from_db()
    assert signal.status == Signal.Status.PROCESSED
    [decision] = decisions_of(signal)
    assert decision.status == Decision.Status.EXECUTED
    assert decision.details[0]["move"] == "open"
    entry, take_profit, stop = (
        Order.objects.get(decision=decision, plan_key=key) for key in ("entry", "tp1", "sl1")
    )
    assert (entry.action, entry.order_type, entry.quantity, entry.status) == ("Buy", "Market", 1, "filled")
    assert entry.avg_fill_price == Decimal("5000")
    assert (take_profit.action, take_profit.price, take_profit.status) == ("Sell", Decimal("5002"), "working")
    assert (stop.action, stop.stop_price, stop.status) == ("Sell", Decimal("4998"), "working")
    assert take_profit.bracket_entry == entry
    assert stop.bracket_entry == entry
    assert len({entry.client_id, take_profit.client_id, stop.client_id}) == 3
    position = Position.objects.get(broker_account=trader.account)
    assert (position.quantity, position.avg_price) == (1, Decimal("5000"))
    assert paper_position(trader) == 1


def test_the_recorder_records_its_virtual_position_at_the_signal_price(task_queue, recorder):
    process(task_queue, stored_signal(recorder, price=Decimal("5010.25")))

    book = RecorderPosition.objects.get(recorder=recorder)
    assert (book.quantity, book.avg_price) == (1, Decimal("5010.25"))


def test_a_take_profit_fill_cancels_the_stop_and_books_the_profit(task_queue, recorder, owner):
    trader = make_trader(recorder)
    process(task_queue, stored_signal(recorder, price=Decimal("5000")))

    price_record(owner=owner, symbol="ES1!", price=Decimal("5002.50"))

    take_profit = Order.objects.get(plan_key="tp1")
    stop = Order.objects.get(plan_key="sl1")
    assert (take_profit.status, take_profit.avg_fill_price) == ("filled", Decimal("5002"))
    assert stop.status == "cancelled"
    position = Position.objects.get(broker_account=trader.account)
    assert (position.quantity, position.realized_pnl) == (0, Decimal("100.00"))


def test_two_targets_split_the_entry_into_two_brackets_whose_pairs_cancel_each_other(task_queue, owner):
    """Two targets: each take-profit rides with its own entry and stop; a fill cancels its partner."""
    recorder = RecorderFactory(
        owner=owner,
        symbol="ES",
        initial_position_size=2,
        tp_targets=[{"value": 4, "trim": 1}, {"value": 8, "trim": None}],
        sl_enabled=True,
        sl_amount=Decimal(8),
    )
    trader = make_trader(recorder)
    signal = stored_signal(recorder, price=Decimal("5000"))
    process(task_queue, signal)
    orders = {order.plan_key: order for order in orders_of(signal)}
    assert {key: order.quantity for key, order in orders.items()} == {
        "entry1": 1,
        "tp1": 1,
        "sl1": 1,
        "entry2": 1,
        "tp2": 1,
        "sl2": 1,
    }
    bracket_of = {key: order.bracket_entry_id for key, order in orders.items()}
    assert bracket_of["tp1"] == bracket_of["sl1"] == orders["entry1"].pk
    assert bracket_of["tp2"] == bracket_of["sl2"] == orders["entry2"].pk
    assert paper_position(trader) == 2

    price_record(owner=owner, symbol="ES", price=Decimal("5001"))  # first target
    statuses = {order.plan_key: order.status for order in orders_of(signal)}
    assert (statuses["tp1"], statuses["sl1"], statuses["sl2"]) == ("filled", "cancelled", "working")
    price_record(owner=owner, symbol="ES", price=Decimal("4997.50"))  # the remaining stop

    statuses = {order.plan_key: order.status for order in orders_of(signal)}
    assert statuses == {
        "entry1": "filled",
        "tp1": "filled",
        "sl1": "cancelled",
        "entry2": "filled",
        "tp2": "cancelled",
        "sl2": "filled",
    }
    assert paper_position(trader) == 0  # never a short from a stop left behind
    position = Position.objects.get(broker_account=trader.account)
    assert position.realized_pnl == Decimal("-75.00")  # +1 point on one, -2.5 points on the other


def test_protection_left_on_a_flat_position_is_cancelled(task_queue, recorder, owner):
    trader = make_trader(recorder)
    process(task_queue, stored_signal(recorder, price=Decimal("5000")))
    # The position is closed outside the product (by hand at the broker): its protection has nothing to do.
    broker = PaperBroker(trader.account)
    PaperOrder.objects.filter(status="working").update(status="cancelled")
    broker.place_order(
        OrderRequest(
            client_id="by-hand",
            account_id=paper_account_id(trader.account_id),
            account_spec="Paper",
            symbol="ES",
            action="Sell",
            order_type="Market",
            quantity=1,
        )
    )
    PaperOrder.objects.filter(
        client_id__in=Order.objects.values("client_id"), order_type__in=["Limit", "Stop"]
    ).update(status="working")

    report = account_sync(account=trader.account)

    assert report.orders_cancelled == 2
    assert set(
        Order.objects.filter(role__in=["take_profit", "stop_loss"]).values_list("status", flat=True)
    ) == {"cancelled"}
    assert not PaperOrder.objects.filter(status="working").exists()


def test_a_task_run_twice_places_every_order_once(decisions_as_tasks, task_queue, recorder):
    make_trader(recorder)
    signal = stored_signal(recorder)

    task_queue.publish("signal_process", signal.pk)
    task_queue.publish("signal_process", signal.pk)  # a re-delivered message
    task_queue.run_one()
    task_queue.run_one()
    [decision] = decisions_of(signal)
    task_queue.publish("trader_signal_execute", decision.pk)  # and a doubled fan-out message
    task_queue.run()

    assert [result for name, _, result in task_queue.handled if name == "signal_process"] == [
        "processed",
        "not-claimed",
    ]
    assert [result for name, _, result in task_queue.handled if name == "trader_signal_execute"] == [
        "executed",
        "not-claimed",
    ]
    assert PaperOrder.objects.count() == 3
    assert Order.objects.count() == 3
    assert trader_signal_execute(decision_id=decision.pk) == "not-claimed"
    assert PaperOrder.objects.count() == 3


def test_a_decision_held_by_a_live_worker_is_not_taken_by_a_second_delivery(
    decisions_as_tasks, task_queue, recorder
):
    make_trader(recorder)
    signal = stored_signal(recorder)
    task_queue.publish("signal_process", signal.pk)
    task_queue.run_one()
    [decision] = decisions_of(signal)
    Decision.objects.filter(pk=decision.pk).update(
        status=Decision.Status.EXECUTING,
        claim_token=uuid.uuid4(),
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )

    assert trader_signal_execute(decision_id=decision.pk) == "not-claimed"
    assert Order.objects.count() == 0


# --- order --------------------------------------------------------------------------------------------------


def test_signals_are_acted_on_in_the_order_they_arrived_whatever_order_the_workers_take_them(
    task_queue, recorder
):
    trader = make_trader(recorder)
    entry = stored_signal(recorder, price=Decimal("5000"))
    close = stored_signal(recorder, action="close", price=Decimal("5001"))

    task_queue.publish("signal_process", close.pk)  # the later message is taken first
    task_queue.publish("signal_process", entry.pk)
    task_queue.run()

    # The close's task processed the entry before it; the entry's own message then found it done.
    assert task_queue.handled[:2] == [
        ("signal_process", close.pk, "processed"),
        ("signal_process", entry.pk, "not-claimed"),
    ]
    assert [decision.status for decision in decisions_of(entry) + decisions_of(close)] == [
        "executed",
        "executed",
    ]
    assert paper_position(trader) == 0
    assert Position.objects.get(broker_account=trader.account).realized_pnl == Decimal("50.00")


def test_the_first_task_drains_its_recorders_backlog_so_later_messages_find_their_signals_done(
    task_queue, recorder
):
    signals = [stored_signal(recorder, received_at=timezone.now() - timedelta(seconds=90)) for _ in range(5)]
    for signal in signals:
        task_queue.publish("signal_process", signal.pk)

    task_queue.run()

    assert [result for _, _, result in task_queue.handled] == [
        "stale",
        "not-claimed",
        "not-claimed",
        "not-claimed",
        "not-claimed",
    ]
    assert set(Signal.objects.values_list("status", flat=True)) == {Signal.Status.STALE}


def test_a_signal_leaves_its_turn_to_the_live_worker_that_holds_an_earlier_one(recorder):
    earlier = stored_signal(recorder)
    later = stored_signal(recorder, action="close")
    Signal.objects.filter(pk=earlier.pk).update(
        status=Signal.Status.PROCESSING,
        claim_token=uuid.uuid4(),
        lease_expires_at=timezone.now() + timedelta(seconds=60),
    )

    assert signal_process(signal_id=later.pk) == "waiting"  # that worker drains the recorder, this one too

    later.refresh_from_db()
    assert later.status == Signal.Status.PENDING
    assert later.attempts == 0


def test_a_traders_decisions_run_in_signal_order(
    decisions_as_tasks, task_queue, recorder, django_capture_on_commit_callbacks
):
    trader = make_trader(recorder)
    entry = stored_signal(recorder, price=Decimal("5000"))
    close = stored_signal(recorder, action="close", price=Decimal("5001"))
    with django_capture_on_commit_callbacks(execute=True):
        signal_process(signal_id=entry.pk)
        signal_process(signal_id=close.pk)
    first, second = task_queue.messages
    task_queue.messages[:] = [second, first]

    task_queue.run()

    assert task_queue.handled == [
        ("trader_signal_execute", second[1], "executed"),
        ("trader_signal_execute", first[1], "not-claimed"),
    ]
    assert decisions_of(entry)[0].status == decisions_of(close)[0].status == Decision.Status.EXECUTED
    assert paper_position(trader) == 0


def test_a_burst_on_one_recorder_is_processed_in_order_without_a_storm_of_messages(task_queue, recorder):
    make_trader(recorder)
    signals = [stored_signal(recorder, action="buy" if number % 2 == 0 else "close") for number in range(40)]
    for signal in reversed(signals):
        task_queue.publish("signal_process", signal.pk)

    task_queue.run()

    assert len([item for item in task_queue.handled if item[0] == "signal_process"]) == 40
    assert paper_position(Trader.objects.get()) == 0
    assert PaperOrder.objects.filter(status="filled").count() == 40


# --- workers that die ---------------------------------------------------------------------------------------


def test_a_signal_whose_worker_died_after_claiming_it_is_recovered_once_the_lease_expires(
    decisions_as_tasks, task_queue, recorder
):
    make_trader(recorder)
    signal = stored_signal(recorder)
    Signal.objects.filter(pk=signal.pk).update(
        status=Signal.Status.PROCESSING,
        claim_token=uuid.uuid4(),
        lease_expires_at=timezone.now() + timedelta(seconds=30),
    )

    assert signal_process(signal_id=signal.pk) == "not-claimed"  # the lease still holds
    assert signals_sweep().signals == 0
    Signal.objects.filter(pk=signal.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    report = signals_sweep()
    task_queue.run()

    assert report.signals == 1
    signal.refresh_from_db()
    assert signal.status == Signal.Status.PROCESSED
    assert signal.attempts == 1
    assert Order.objects.filter(status="filled").count() == 1


def test_a_trader_task_whose_worker_died_before_sending_sends_everything_once_when_recovered(
    decisions_as_tasks, task_queue, recorder, monkeypatch
):
    make_trader(recorder)
    signal = stored_signal(recorder)
    task_queue.publish("signal_process", signal.pk)
    task_queue.run_one()
    [decision] = decisions_of(signal)

    def killed(*args, **kwargs):
        raise WorkerKilled

    monkeypatch.setattr("trading.services.execution.decision_submit", killed)
    with pytest.raises(WorkerKilled):
        task_queue.run_one()
    monkeypatch.undo()
    monkeypatch.setattr(queue, "task_publish", task_queue.publish)
    assert set(Order.objects.values_list("status", flat=True)) == {"pending"}

    with time_machine.travel(timezone.now() + timedelta(seconds=10), tick=False):
        assert signals_sweep().decisions == 0  # the dead worker's lease has not run out
    Decision.objects.filter(pk=decision.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert signals_sweep().decisions == 1
    task_queue.run()

    decision.refresh_from_db()
    assert decision.status == Decision.Status.EXECUTED
    assert PaperOrder.objects.count() == 3
    assert Order.objects.get(plan_key="entry").status == "filled"


def test_an_order_whose_worker_died_mid_send_is_looked_up_and_never_sent_twice(
    decisions_as_tasks, task_queue, recorder, monkeypatch
):
    trader = make_trader(recorder)
    signal = stored_signal(recorder)
    task_queue.publish("signal_process", signal.pk)
    task_queue.run_one()
    [decision] = decisions_of(signal)
    real = PaperBroker.place_bracket

    def sent_then_killed(self, bracket):
        real(self, bracket)
        raise WorkerKilled

    monkeypatch.setattr(PaperBroker, "place_bracket", sent_then_killed)
    with pytest.raises(WorkerKilled):
        task_queue.run_one()
    monkeypatch.setattr(PaperBroker, "place_bracket", real)
    assert Order.objects.get(plan_key="entry").status == "submitting"
    Decision.objects.filter(pk=decision.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    assert trader_signal_execute(decision_id=decision.pk) == Decision.Status.EXECUTED

    assert PaperOrder.objects.count() == 3
    entry = Order.objects.get(plan_key="entry")
    assert entry.status == "filled"
    assert entry.broker_order_id == str(PaperOrder.objects.get(client_id=entry.client_id).pk)
    assert paper_position(trader) == 1


def test_an_order_claimed_by_a_dead_worker_before_the_broker_heard_of_it_is_not_sent_blind(
    decisions_as_tasks, task_queue, recorder
):
    make_trader(recorder)
    signal = stored_signal(recorder)
    task_queue.publish("signal_process", signal.pk)
    task_queue.run_one()
    [decision] = decisions_of(signal)
    token = uuid.uuid4()
    Decision.objects.filter(pk=decision.pk).update(
        status=Decision.Status.EXECUTING,
        claim_token=token,
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )
    decision.refresh_from_db()
    assert decision_plan(decision, token, timezone.now())
    Order.objects.filter(decision=decision).update(status=Order.Status.SUBMITTING)
    Decision.objects.filter(pk=decision.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    status = trader_signal_execute(decision_id=decision.pk)

    assert status == Decision.Status.FAILED
    assert PaperOrder.objects.count() == 0
    assert set(Order.objects.values_list("status", flat=True)) == {"failed"}
    assert "never placed" in Order.objects.get(plan_key="entry").error


# --- broker answers -----------------------------------------------------------------------------------------


def test_a_refusal_by_the_broker_is_recorded_verbatim_and_nothing_after_it_is_sent(
    task_queue, recorder, faulty_broker
):
    make_trader(recorder)
    faulty_broker.rejected("Max position limit reached for account DEMO123")
    signal = stored_signal(recorder)

    process(task_queue, signal)

    [decision] = decisions_of(signal)
    assert decision.status == Decision.Status.FAILED
    assert "Max position limit reached for account DEMO123" in decision.reason
    orders = orders_of(signal)
    assert {order.status for order in orders} == {"rejected"}
    assert {order.error for order in orders} == {"Max position limit reached for account DEMO123"}
    assert PaperOrder.objects.count() == 0


def test_an_unavailable_broker_is_retried_and_the_retry_sends_once(
    decisions_as_tasks, task_queue, recorder, faulty_broker
):
    trader = make_trader(recorder)
    faulty_broker.unavailable()
    signal = stored_signal(recorder)

    process(task_queue, signal)

    [decision] = decisions_of(signal)
    assert task_queue.retries == [(decision.pk, "The broker is down for maintenance.")]
    decision.refresh_from_db()
    assert decision.status == Decision.Status.EXECUTING
    assert set(Order.objects.values_list("status", flat=True)) == {"pending"}

    task_queue.publish("trader_signal_execute", decision.pk)
    task_queue.run()

    decision.refresh_from_db()
    assert decision.status == Decision.Status.EXECUTED
    assert faulty_broker.calls == ["place_bracket", "place_bracket"]
    assert PaperOrder.objects.count() == 3
    assert paper_position(trader) == 1


def test_a_decision_abandoned_after_the_last_retry_marks_its_orders_not_placed(
    decisions_as_tasks, task_queue, recorder, faulty_broker
):
    make_trader(recorder)
    faulty_broker.unavailable()
    signal = stored_signal(recorder)
    process(task_queue, signal)
    [decision] = decisions_of(signal)

    decision_abandon(decision_id=decision.pk, reason="the broker stayed unavailable")

    decision.refresh_from_db()
    assert decision.status == Decision.Status.FAILED
    assert {order.error for order in orders_of(signal)} == {"Not sent: the broker stayed unavailable"}


def test_an_unknown_outcome_is_never_resent_and_is_settled_from_the_broker(
    task_queue, recorder, faulty_broker
):
    make_trader(recorder)
    faulty_broker.unknown(sent=True)
    signal = stored_signal(recorder)

    process(task_queue, signal)

    [decision] = decisions_of(signal)
    assert decision.status == Decision.Status.UNSETTLED
    assert {order.status for order in orders_of(signal)} == {"unknown"}
    assert trader_signal_execute(decision_id=decision.pk) == "not-claimed"
    assert faulty_broker.calls == ["place_bracket"]

    for order in orders_of(signal):
        order_settle(order_id=order.pk)

    assert PaperOrder.objects.count() == 3
    assert {order.plan_key: order.status for order in orders_of(signal)} == {
        "entry": "filled",
        "tp1": "working",
        "sl1": "working",
    }
    decision.refresh_from_db()
    assert decision.status == Decision.Status.EXECUTED


def test_an_unknown_order_the_broker_never_took_is_marked_not_placed_and_not_sent_again(
    task_queue, recorder, faulty_broker
):
    make_trader(recorder)
    faulty_broker.unknown(sent=False)
    signal = stored_signal(recorder)
    process(task_queue, signal)

    with time_machine.travel(timezone.now() + timedelta(seconds=45), tick=False):
        report = signals_sweep()
    task_queue.run()

    assert report.orders_to_settle == 3
    assert {order.status for order in orders_of(signal)} == {"failed"}
    assert PaperOrder.objects.count() == 0
    assert faulty_broker.calls == ["place_bracket"]
    assert decisions_of(signal)[0].status == Decision.Status.FAILED


# --- moves --------------------------------------------------------------------------------------------------


def test_a_close_while_flat_is_refused_and_never_becomes_a_short(task_queue, recorder):
    trader = make_trader(recorder)
    signal = stored_signal(recorder, action="close")

    process(task_queue, signal)

    [decision] = decisions_of(signal)
    assert decision.status == Decision.Status.REFUSED
    assert "already flat" in decision.reason
    assert Order.objects.count() == 0
    assert paper_position(trader) == 0


def test_a_close_liquidates_the_position_and_its_protective_orders(task_queue, recorder, owner):
    trader = make_trader(recorder)
    process(task_queue, stored_signal(recorder, price=Decimal("5000")))

    signal = stored_signal(recorder, action="close", price=Decimal("5001"))
    process(task_queue, signal)

    [exit_order] = orders_of(signal)
    assert exit_order.via_liquidation
    assert exit_order.status == "filled"
    assert exit_order.avg_fill_price == Decimal("5001")
    assert set(
        Order.objects.filter(role__in=["take_profit", "stop_loss"]).values_list("status", flat=True)
    ) == {"cancelled"}
    assert not PaperOrder.objects.filter(status="working").exists()
    position = Position.objects.get(broker_account=trader.account)
    assert (position.quantity, position.realized_pnl) == (0, Decimal("50.00"))


def test_a_reversal_closes_the_long_then_opens_the_short_with_new_protection(task_queue, recorder):
    trader = make_trader(recorder)
    process(task_queue, stored_signal(recorder, price=Decimal("5000")))

    signal = stored_signal(
        recorder,
        action="sell",
        price=Decimal("4999"),
        quantity=Decimal(2),
        market_position="short",
        position_size=-1,
    )
    process(task_queue, signal)

    orders = {order.plan_key: order for order in orders_of(signal)}
    assert orders["exit"].via_liquidation
    assert orders["exit"].status == "filled"
    assert (orders["entry"].action, orders["entry"].quantity, orders["entry"].status) == ("Sell", 1, "filled")
    assert orders["tp1"].price == Decimal("4997")
    assert orders["sl1"].stop_price == Decimal("5001")
    position = Position.objects.get(broker_account=trader.account)
    assert (position.quantity, position.avg_price, position.realized_pnl) == (
        -1,
        Decimal("4999"),
        Decimal("-50.00"),
    )
    assert PaperOrder.objects.filter(status="working").count() == 2


def test_a_sub_account_multiplier_scales_every_order(task_queue, recorder):
    trader = make_trader(recorder, multiplier=3)
    signal = stored_signal(recorder)

    process(task_queue, signal)

    assert {order.quantity for order in orders_of(signal)} == {3}
    assert paper_position(trader) == 3


def test_without_any_price_an_entry_cannot_be_planned_and_the_reason_says_so(task_queue, recorder):
    make_trader(recorder)
    signal = stored_signal(recorder, price=None)

    process(task_queue, signal)

    [decision] = decisions_of(signal)
    assert decision.status == Decision.Status.FAILED
    assert "No price is known for ES" in decision.reason
    assert Order.objects.count() == 0


def test_a_signal_without_a_price_uses_the_last_price_known(task_queue, recorder, owner):
    trader = make_trader(recorder)
    price_record(owner=owner, symbol="ES", price=Decimal("5100"))

    process(task_queue, stored_signal(recorder, price=None))

    assert Position.objects.get(broker_account=trader.account).avg_price == Decimal("5100")


def test_a_traders_cooldown_counts_its_own_signals(task_queue, recorder):
    make_trader(recorder, signal_cooldown=60)
    process(task_queue, stored_signal(recorder))

    second = stored_signal(recorder, received_at=timezone.now() + timedelta(seconds=10))
    process(task_queue, second)

    [decision] = decisions_of(second)
    assert decision.status == Decision.Status.REFUSED
    assert "Cooldown" in decision.reason


def test_a_traders_daily_loss_limit_counts_its_accounts_fills(task_queue, recorder, owner):
    make_trader(recorder, max_daily_loss=Decimal(100))
    process(task_queue, stored_signal(recorder, price=Decimal("5000")))
    price_record(owner=owner, symbol="ES", price=Decimal("4997"))  # stop hit: -3 points, -$150

    signal = stored_signal(recorder, price=Decimal("4997"), received_at=timezone.now() + timedelta(seconds=1))
    process(task_queue, signal)

    [decision] = decisions_of(signal)
    assert decision.status == Decision.Status.REFUSED
    assert "Daily loss limit reached" in decision.reason


# --- fan-out ------------------------------------------------------------------------------------------------


def test_a_signal_fans_out_to_every_enabled_trader_one_task_each(decisions_as_tasks, task_queue, owner):
    recorder = RecorderFactory(owner=owner, symbol="ES", is_private=False)
    traders = [make_trader(recorder) for _ in range(3)]
    traders += [make_trader(recorder, owner=UserFactory()) for _ in range(9)]
    switched_off = make_trader(recorder)
    switched_off.enabled = False
    switched_off.save()
    signal = stored_signal(recorder)

    task_queue.publish("signal_process", signal.pk)
    task_queue.run_one()

    assert task_queue.names() == ["trader_signal_execute"] * 12
    task_queue.run()
    assert {decision.trader_id for decision in decisions_of(signal)} == {trader.pk for trader in traders}
    assert {decision.status for decision in decisions_of(signal)} == {Decision.Status.EXECUTED}
    for trader in traders:
        assert paper_position(trader) == 1
    assert paper_position(switched_off) == 0


def test_one_unavailable_account_does_not_hold_back_the_others(
    decisions_as_tasks, task_queue, owner, faulty_broker
):
    recorder = RecorderFactory(owner=owner, symbol="ES")
    slow, *others = [make_trader(recorder) for _ in range(4)]
    faulty_broker.unavailable()
    signal = stored_signal(recorder)

    process(task_queue, signal)

    statuses = {decision.trader_id: decision.status for decision in decisions_of(signal)}
    assert statuses[slow.pk] == Decision.Status.EXECUTING
    assert all(statuses[trader.pk] == Decision.Status.EXECUTED for trader in others)


def test_traders_of_others_stop_following_a_recorder_made_private(task_queue, owner):
    recorder = RecorderFactory(owner=owner, symbol="ES", is_private=False)
    mine = make_trader(recorder)
    theirs = make_trader(recorder, owner=UserFactory())
    recorder.is_private = True
    recorder.save()
    signal = stored_signal(recorder)

    process(task_queue, signal)

    assert [decision.trader_id for decision in decisions_of(signal)] == [mine.pk]
    assert paper_position(theirs) == 0


# --- staleness ----------------------------------------------------------------------------------------------


def test_a_signal_reaching_a_worker_after_the_maximum_age_is_stale_and_not_traded(task_queue, recorder):
    make_trader(recorder)
    signal = stored_signal(recorder, received_at=timezone.now() - timedelta(seconds=61))

    process(task_queue, signal)

    signal.refresh_from_db()
    assert signal.status == Signal.Status.STALE
    assert "maximum age of 60 s" in signal.reason
    assert Decision.objects.count() == 0
    assert Order.objects.count() == 0


def test_an_alert_time_older_than_the_maximum_age_makes_it_stale(task_queue, recorder):
    signal = stored_signal(recorder, fire_time=timezone.now() - timedelta(seconds=90))

    process(task_queue, signal)

    signal.refresh_from_db()
    assert signal.status == Signal.Status.STALE
    assert "the time in the alert" in signal.reason


def test_a_recorder_with_a_longer_maximum_age_still_trades_an_older_signal(task_queue, recorder):
    recorder.max_signal_age = 300
    recorder.save()
    make_trader(recorder)
    signal = stored_signal(recorder, received_at=timezone.now() - timedelta(seconds=120))

    process(task_queue, signal)

    assert Order.objects.filter(plan_key="entry", status="filled").exists()


def test_a_trader_task_that_arrives_late_is_stale_even_if_the_signal_was_fresh(
    decisions_as_tasks, task_queue, recorder
):
    make_trader(recorder)
    signal = stored_signal(recorder)
    task_queue.publish("signal_process", signal.pk)
    task_queue.run_one()

    with time_machine.travel(timezone.now() + timedelta(seconds=75), tick=False):
        task_queue.run()

    [decision] = decisions_of(signal)
    assert decision.status == Decision.Status.STALE
    assert Order.objects.count() == 0


# --- kill switches ------------------------------------------------------------------------------------------


def test_the_global_kill_switch_stores_the_signal_as_blocked_and_sends_nothing(task_queue, recorder, staff):
    make_trader(recorder)
    killswitch_set(engaged=True, changed_by=staff, reason="exchange outage")
    signal = stored_signal(recorder)

    process(task_queue, signal)

    signal.refresh_from_db()
    assert signal.status == Signal.Status.BLOCKED
    assert "global kill switch" in signal.reason
    assert "exchange outage" in signal.reason
    assert Decision.objects.count() == 0
    assert Order.objects.count() == 0


def test_a_users_kill_switch_blocks_their_traders_and_not_other_users_on_a_public_recorder(task_queue, owner):
    recorder = RecorderFactory(owner=owner, symbol="ES", is_private=False)
    mine = make_trader(recorder)
    other = make_trader(recorder, owner=UserFactory())
    killswitch_set(engaged=True, user=owner)
    signal = stored_signal(recorder)

    process(task_queue, signal)

    signal.refresh_from_db()
    assert signal.status == Signal.Status.BLOCKED
    decisions = {decision.trader_id: decision for decision in decisions_of(signal)}
    assert decisions[mine.pk].status == Decision.Status.BLOCKED
    assert "owner's kill switch" in decisions[mine.pk].reason
    assert decisions[other.pk].status == Decision.Status.EXECUTED
    assert paper_position(mine) == 0
    assert paper_position(other) == 1


def test_an_accounts_kill_switch_blocks_only_that_account(task_queue, recorder):
    blocked = make_trader(recorder)
    running = make_trader(recorder)
    killswitch_set(engaged=True, account=blocked.account)
    signal = stored_signal(recorder)

    process(task_queue, signal)

    decisions = {decision.trader_id: decision.status for decision in decisions_of(signal)}
    assert decisions == {blocked.pk: Decision.Status.BLOCKED, running.pk: Decision.Status.EXECUTED}
    assert paper_position(blocked) == 0
    assert paper_position(running) == 1


def test_a_kill_switch_turned_off_lets_the_next_signal_trade(task_queue, recorder):
    make_trader(recorder)
    killswitch_set(engaged=True)
    killswitch_set(engaged=False)

    process(task_queue, stored_signal(recorder))

    assert Order.objects.filter(status="filled").count() == 1


# --- the sweeper --------------------------------------------------------------------------------------------


def test_the_sweeper_requeues_what_was_left_behind_and_nothing_else(task_queue, recorder):
    now = timezone.now()
    fresh = stored_signal(recorder, received_at=now - timedelta(seconds=5))
    lost = stored_signal(recorder, received_at=now - timedelta(seconds=61))
    done = stored_signal(recorder, received_at=now - timedelta(seconds=600))
    Signal.objects.filter(pk=done.pk).update(status=Signal.Status.PROCESSED)
    held = stored_signal(recorder, received_at=now - timedelta(seconds=90))
    Signal.objects.filter(pk=held.pk).update(
        status=Signal.Status.PROCESSING, lease_expires_at=now + timedelta(seconds=60)
    )

    report = signals_sweep(now=now)

    assert report.signals == 1
    assert task_queue.messages == [("signal_process", lost.pk)]
    assert fresh.pk not in [object_id for _, object_id in task_queue.messages]


def test_the_sweeper_requeues_a_decision_whose_message_was_lost(decisions_as_tasks, task_queue, recorder):
    make_trader(recorder)
    signal = stored_signal(recorder)
    task_queue.publish("signal_process", signal.pk)
    task_queue.run_one()
    task_queue.messages.clear()  # the fan-out message is lost
    [decision] = decisions_of(signal)
    recorder.max_signal_age = 600
    recorder.save()

    with time_machine.travel(timezone.now() + timedelta(seconds=61), tick=False):
        report = signals_sweep()
        task_queue.run()

    assert report.decisions == 1
    decision.refresh_from_db()
    assert decision.status == Decision.Status.EXECUTED


# --- the demo -----------------------------------------------------------------------------------------------


def test_the_demo_seed_is_idempotent_and_its_alert_opens_a_position(
    task_queue, client, owner, django_capture_on_commit_callbacks
):
    first = demo_trading_seed(owner)
    again = demo_trading_seed(owner)
    assert {key: getattr(value, "pk", value) for key, value in first.items()} == {
        key: getattr(value, "pk", value) for key, value in again.items()
    }

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            first["webhook_path"],
            data=b'{"action": "buy", "ticker": "ES1!", "price": 5000.25}',
            content_type="application/json",
        )
    task_queue.run()

    assert response.status_code == 200
    position = Position.objects.get(
        broker_account=first["account"], account_id=paper_account_id(first["account"].pk)
    )
    assert (position.quantity, position.avg_price) == (1, Decimal("5000.25"))
