"""Faults and races in the execution pipeline that must neither lose nor double a trade.

Lost messages, dead workers, refused and unknown orders, kill switches during retries, prices racing each
other and doubled deliveries: each test drives one of them and asserts the position ends as it should.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from trading.brokers import registry
from trading.brokers.base import OrderOutcomeUnknown
from trading.brokers.paper import PaperBroker, paper_price_update
from trading.models import (
    Decision,
    Order,
    PaperOrder,
    PaperPosition,
    RecorderPosition,
    Signal,
)
from trading.services.execution import trader_signal_execute
from trading.services.killswitches import killswitch_set
from trading.services.prices import price_record
from trading.services.signals import IncomingAlert, signal_accept, signal_process
from trading.services.sweep import signals_sweep
from trading.services.sync import account_sync
from trading.tests.execution_support import *  # noqa: F403  fixtures
from trading.tests.execution_support import decisions_of, make_trader, orders_of, stored_signal
from trading.tests.factories import RecorderFactory

THREAD_TIMEOUT = 10.0


def paper_position(trader) -> int:
    row = PaperPosition.objects.filter(broker_account=trader.account, root="ES").first()
    return row.quantity if row else 0


def working_stop_contracts(trader) -> int:
    return sum(
        PaperOrder.objects.filter(
            broker_account=trader.account, status="working", order_type__in=["Stop", "TrailingStop"]
        ).values_list("quantity", flat=True)
    )


def process(task_queue, signal: Signal) -> None:
    task_queue.publish("signal_process", signal.pk)
    task_queue.run()


def es_recorder(owner, **settings):
    values = {"tp_targets": [{"value": 8, "trim": None}], "sl_enabled": True, "sl_amount": Decimal(8)}
    return RecorderFactory(owner=owner, symbol="ES", **{**values, **settings})


def two_target_recorder(owner):
    """Two contracts, two take-profits (4 and 8 ticks) each paired with a stop 8 ticks away: no bracket."""
    return es_recorder(
        owner,
        initial_position_size=2,
        tp_targets=[{"value": 4, "trim": 1}, {"value": 8, "trim": None}],
    )


def run_in_threads(*targets):
    """Run each callable in its own thread with its own database connection; re-raise the first error."""
    errors: list[BaseException] = []
    results: list[object] = [None] * len(targets)

    def runner(index, target):
        try:
            results[index] = target()
        except BaseException as error:  # surfaced to the test below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=runner, args=(i, t)) for i, t in enumerate(targets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(THREAD_TIMEOUT)
        assert not thread.is_alive(), "a thread hung"
    if errors:
        raise errors[0]
    return results


# --- defects ------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_signal_whose_queue_message_was_lost_is_still_traded_when_the_sweeper_requeues_it(
    task_queue, owner
):
    recorder = es_recorder(owner)
    make_trader(recorder)
    received = timezone.now()
    signal = stored_signal(recorder, received_at=received)  # stored; its publish failed (Redis restarting)

    # Beat runs the sweeper every 30 s; take the first sweep that re-queues the signal.
    for seconds in range(30, 181, 30):
        with time_machine.travel(received + timedelta(seconds=seconds), tick=False):
            if signals_sweep().signals:
                task_queue.run()
                break

    signal.refresh_from_db()
    assert signal.status == Signal.Status.PROCESSED, signal.reason
    assert Order.objects.filter(plan_key="entry", status="filled").exists()


class WorkerKilled(BaseException):
    """A worker process dying: not an Exception, so no handler of ours sees it."""


@pytest.mark.django_db
def test_a_decision_whose_worker_died_after_claiming_it_is_still_traded(
    decisions_as_tasks, task_queue, owner, monkeypatch
):
    recorder = es_recorder(owner)
    make_trader(recorder)
    signal = stored_signal(recorder)
    task_queue.publish("signal_process", signal.pk)
    task_queue.run_one()
    [decision] = decisions_of(signal)
    claimed_at = timezone.now()

    def killed(*args, **kwargs):
        raise WorkerKilled

    with monkeypatch.context() as patch:
        patch.setattr("trading.services.execution.decision_plan", killed)
        with pytest.raises(WorkerKilled):
            task_queue.run_one()
    # acks_late + reject_on_worker_lost: the message comes back at once, to another worker.
    assert trader_signal_execute(decision_id=decision.pk) == "not-claimed"

    for seconds in range(30, 601, 30):
        with time_machine.travel(claimed_at + timedelta(seconds=seconds), tick=False):
            if signals_sweep().decisions:
                task_queue.run()
                break

    decision.refresh_from_db()
    assert decision.status == Decision.Status.EXECUTED, decision.reason
    assert Order.objects.filter(plan_key="entry", status="filled").exists()


@pytest.mark.django_db
def test_an_add_refused_by_the_broker_leaves_the_held_position_protected(task_queue, owner, faulty_broker):
    recorder = es_recorder(owner)
    trader = make_trader(recorder)
    process(task_queue, stored_signal(recorder, price=Decimal("5000")))
    assert working_stop_contracts(trader) == 1

    faulty_broker.rejected("Max position limit reached for this account")
    add = stored_signal(recorder, price=Decimal("5000"), received_at=timezone.now() + timedelta(seconds=1))
    process(task_queue, add)

    assert Order.objects.get(decision__signal=add, plan_key="entry").status == "rejected"
    assert paper_position(trader) == 1
    # Today: the old stop was cancelled and the new one "Not sent": one contract held with no stop.
    assert working_stop_contracts(trader) == 1


@pytest.mark.django_db
def test_a_kill_switch_turned_on_while_a_decision_waits_for_its_retry_stops_its_orders(
    decisions_as_tasks, task_queue, owner, faulty_broker
):
    recorder = es_recorder(owner)
    trader = make_trader(recorder)
    faulty_broker.unavailable()
    signal = stored_signal(recorder)
    process(task_queue, signal)
    [decision] = decisions_of(signal)
    assert decision.status == Decision.Status.EXECUTING  # planned, waiting for the broker

    killswitch_set(engaged=True, account=trader.account, reason="runaway strategy")
    task_queue.publish("trader_signal_execute", decision.pk)  # Celery's retry
    task_queue.run()

    assert PaperOrder.objects.count() == 0
    assert paper_position(trader) == 0
    decision.refresh_from_db()
    assert "kill switch" in decision.reason


@pytest.mark.django_db
def test_after_an_average_down_fill_the_stop_covers_the_whole_position(task_queue, owner):
    recorder = es_recorder(
        owner, avg_down_enabled=True, avg_down_amount=1, avg_down_point=Decimal(4), avg_down_units="ticks"
    )
    trader = make_trader(recorder)
    process(task_queue, stored_signal(recorder, price=Decimal("5000")))
    avg = Order.objects.get(plan_key="avg1")
    assert (avg.action, avg.price, avg.status) == ("Buy", Decimal("4999"), "working")

    price_record(owner=owner, symbol="ES", price=Decimal("4999"))  # the average-down fills
    assert paper_position(trader) == 2
    # Re-planned from the new average (4999.5): the stop moves to 4997.5 and covers both contracts.
    assert working_stop_contracts(trader) == 2
    price_record(owner=owner, symbol="ES", price=Decimal("4997"))  # the stop is hit

    assert paper_position(trader) == 0


@pytest.mark.django_db
def test_new_protection_is_not_stacked_on_old_protection_whose_cancel_failed(task_queue, owner, monkeypatch):
    recorder = es_recorder(owner)
    trader = make_trader(recorder)
    process(task_queue, stored_signal(recorder, price=Decimal("5000")))

    class CancelTimesOut(PaperBroker):
        def cancel_order(self, broker_order_id):
            raise OrderOutcomeUnknown("The cancel timed out: check before sending it again.")

    monkeypatch.setattr(registry, "broker_for_account", lambda account, **options: CancelTimesOut(account))
    add = stored_signal(recorder, price=Decimal("5000"), received_at=timezone.now() + timedelta(seconds=1))
    process(task_queue, add)
    monkeypatch.undo()
    # The cancel's outcome is unknown, so nothing new was sent: Celery retries once the broker answers.
    [decision] = decisions_of(add)
    task_queue.publish("trader_signal_execute", decision.pk)
    task_queue.run()
    assert {order.plan_key: order.quantity for order in orders_of(add)} == {"entry": 1, "tp1": 2, "sl1": 2}
    assert paper_position(trader) == 2

    # Today three contracts of sell stops protect a long of two.
    assert working_stop_contracts(trader) <= 2
    price_record(owner=owner, symbol="ES", price=Decimal("4997"))
    assert paper_position(trader) == 0  # today: short 1


@pytest.mark.django_db(transaction=True)
def test_two_prices_arriving_together_never_fill_both_sides_of_a_take_profit_and_stop_pair(
    task_queue, owner, monkeypatch
):
    recorder = two_target_recorder(owner)
    trader = make_trader(recorder)
    process(task_queue, stored_signal(recorder, price=Decimal("5000")))
    assert paper_position(trader) == 2

    real_sync = account_sync
    first_filled, second_done = threading.Event(), threading.Event()
    first_thread: list[threading.Thread] = []

    def sync(**kwargs):
        if threading.current_thread() in first_thread:
            first_filled.set()
            second_done.wait(THREAD_TIMEOUT)
        return real_sync(**kwargs)

    monkeypatch.setattr("trading.services.prices.account_sync", sync)

    def first_price():  # the price feed: the first target is reached
        first_thread.append(threading.current_thread())
        price_record(owner=owner.pk, symbol="ES", price=Decimal("5001"))

    def second_price():  # a signal's price a moment later: both stops are crossed
        first_filled.wait(THREAD_TIMEOUT)
        try:
            price_record(owner=owner.pk, symbol="ES", price=Decimal("4997.50"))
        finally:
            second_done.set()

    run_in_threads(first_price, second_price)

    # Today: tp1 sold one, then sl1 and sl2 sold two more: short 1 with nothing protecting it.
    assert paper_position(trader) == 0


@pytest.mark.django_db
def test_an_entry_whose_outcome_was_unknown_but_filled_still_gets_its_protection(
    task_queue, owner, faulty_broker
):
    recorder = two_target_recorder(owner)
    trader = make_trader(recorder)
    faulty_broker.unknown(sent=True)  # the entry reaches the broker; the answer is lost
    signal = stored_signal(recorder)
    process(task_queue, signal)

    with time_machine.travel(timezone.now() + timedelta(seconds=45), tick=False):
        signals_sweep()
    task_queue.run()

    # The first bracket (entry1 with tp1 and sl1) reached the broker; the second waited until it was settled.
    assert Order.objects.get(plan_key="entry1").status == "filled"
    assert Order.objects.get(plan_key="entry2").status == "filled"
    assert paper_position(trader) == 2
    assert working_stop_contracts(trader) == 2


@pytest.mark.django_db
def test_a_close_whose_liquidation_outcome_was_unknown_is_settled_and_the_position_ends_flat(
    task_queue, owner, faulty_broker
):
    recorder = es_recorder(owner)
    trader = make_trader(recorder)
    process(task_queue, stored_signal(recorder, price=Decimal("5000")))
    faulty_broker.unknown(sent=False)  # the liquidation request never reached the broker
    close = stored_signal(recorder, action="close", price=Decimal("5001"))
    process(task_queue, close)
    [exit_order] = orders_of(close)
    assert exit_order.via_liquidation
    assert exit_order.status == "unknown"

    with time_machine.travel(timezone.now() + timedelta(seconds=45), tick=False):
        signals_sweep()
    task_queue.run()

    exit_order.refresh_from_db()
    assert exit_order.status != "unknown"
    assert decisions_of(close)[0].status != Decision.Status.UNSETTLED
    assert paper_position(trader) == 0  # today: still long 1


# --- correct behaviour under races ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_one_decision_delivered_to_two_workers_at_once_places_its_orders_once(
    decisions_as_tasks, task_queue, owner
):
    recorder = es_recorder(owner)
    trader = make_trader(recorder)
    signal = stored_signal(recorder)
    task_queue.publish("signal_process", signal.pk)
    task_queue.run_one()
    [decision] = decisions_of(signal)
    start = threading.Barrier(2)

    def worker():
        start.wait(THREAD_TIMEOUT)
        return trader_signal_execute(decision_id=decision.pk)

    results = run_in_threads(worker, worker)

    assert sorted(results) == ["executed", "not-claimed"]
    assert PaperOrder.objects.count() == 3
    assert Order.objects.filter(decision=decision).count() == 3
    assert paper_position(trader) == 1


@pytest.mark.django_db(transaction=True)
def test_one_signal_delivered_to_two_workers_at_once_is_judged_and_recorded_once(
    decisions_as_tasks, task_queue, owner
):
    recorder = es_recorder(owner)
    make_trader(recorder)
    signal = stored_signal(recorder)
    start = threading.Barrier(2)

    def worker():
        start.wait(THREAD_TIMEOUT)
        return signal_process(signal_id=signal.pk)

    results = run_in_threads(worker, worker)

    assert sorted(results) == ["not-claimed", "processed"]
    assert Decision.objects.filter(signal=signal).count() == 1
    assert task_queue.names() == ["trader_signal_execute"]
    book = RecorderPosition.objects.get(recorder=recorder)
    assert (book.quantity, book.signal_count) == (1, 1)


@pytest.mark.django_db(transaction=True)
def test_two_copies_of_an_alert_racing_each_other_are_stored_once(owner):
    recorder = es_recorder(owner)
    received = timezone.now()
    alert = IncomingAlert(
        raw_body='{"action": "buy", "id": "ES-7"}',
        content_type="application/json",
        source_ip="52.89.214.238",
        received_at=received,
        fields={"action": "buy", "id": "ES-7"},
        fingerprint="f" * 64,
        action="buy",
        alert_id="ES-7",
    )
    start = threading.Barrier(2)

    def deliver():
        start.wait(THREAD_TIMEOUT)
        return signal_accept(recorder=recorder, alert=alert)

    first, second = run_in_threads(deliver, deliver)

    assert sorted([first.outcome, second.outcome]) == ["accepted", "duplicate"]
    assert first.signal_id == second.signal_id
    assert Signal.objects.filter(recorder=recorder).count() == 1


@pytest.mark.django_db
def test_a_reversal_whose_position_was_already_stopped_out_opens_only_the_new_side(
    task_queue, owner, monkeypatch
):
    """The stop fills between the broker read and the liquidation: the exit closes nothing, never sells."""
    recorder = es_recorder(owner)
    trader = make_trader(recorder)
    process(task_queue, stored_signal(recorder, price=Decimal("5000")))
    real = PaperBroker.liquidate_position

    def stopped_out_first(self, account_id, symbol):
        # The market trades through the stop just before the liquidation arrives.
        paper_price_update(owner_id=owner.pk, symbol="ES", price=Decimal("4998"))
        return real(self, account_id, symbol)

    monkeypatch.setattr(PaperBroker, "liquidate_position", stopped_out_first)
    reverse = stored_signal(
        recorder,
        action="sell",
        price=Decimal("4999"),
        quantity=Decimal(2),
        market_position="short",
        position_size=-1,
    )
    process(task_queue, reverse)

    orders = {order.plan_key: order for order in orders_of(reverse)}
    assert orders["exit"].status == "cancelled"  # nothing left to close
    assert (orders["entry"].quantity, orders["entry"].status) == (1, "filled")
    assert paper_position(trader) == -1
