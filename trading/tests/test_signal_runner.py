"""The recorder's runner: one message wakes it; it drains its recorder in order and sends orders at once."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from trading.brokers import registry
from trading.brokers.paper import PaperBroker
from trading.models import BrokerAccount, Decision, Order, PaperOrder, Signal
from trading.services import queue
from trading.services.signals import signal_process
from trading.tests.execution_support import *  # noqa: F403  fixtures
from trading.tests.execution_support import alert, make_trader, stored_signal
from trading.tests.factories import RecorderFactory

pytestmark = pytest.mark.django_db

THREAD_TIMEOUT = 10.0


@pytest.fixture
def published(monkeypatch) -> list[tuple[str, int]]:
    """Task messages as sent by the real wake-up (runner keys of this test's own, see conftest)."""
    sent: list[tuple[str, int]] = []
    monkeypatch.setattr(
        queue, "task_publish", lambda name, object_id, **options: sent.append((name, object_id))
    )
    return sent


def test_the_first_alert_of_a_recorder_wakes_its_runner_and_the_next_ones_send_nothing_while_it_runs(
    published, owner
):
    recorder, other = RecorderFactory(owner=owner), RecorderFactory(owner=owner)

    queue.recorder_wake(recorder.pk, 1)
    queue.recorder_wake(recorder.pk, 2)  # the runner is already on its way
    queue.recorder_wake(other.pk, 3)  # another recorder has a runner of its own

    assert published == [(queue.SIGNAL_PROCESS, 1), (queue.SIGNAL_PROCESS, 3)]
    queue.runner_release(recorder.pk)
    queue.recorder_wake(recorder.pk, 4)
    assert published[-1] == (queue.SIGNAL_PROCESS, 4)


def test_one_message_drains_the_recorder_and_its_orders_are_sent_without_another_task(task_queue, owner):
    recorder = RecorderFactory(owner=owner, symbol="ES")
    trader = make_trader(recorder)
    entry = stored_signal(recorder, price=Decimal("5000"))
    close = stored_signal(recorder, action="close", price=Decimal("5001"))

    assert signal_process(signal_id=entry.pk) == Signal.Status.PROCESSED

    assert task_queue.messages == []  # no trader task, no second signal task
    assert set(Signal.objects.values_list("status", flat=True)) == {Signal.Status.PROCESSED}
    assert [decision.status for decision in Decision.objects.order_by("pk")] == ["executed", "executed"]
    entry_order = Order.objects.get(signal=entry, role=Order.Role.ENTRY)
    exit_order = Order.objects.get(signal=close, role=Order.Role.EXIT)
    assert entry_order.status == exit_order.status == Order.Status.FILLED
    assert trader.account.positions.get().quantity == 0


def test_an_alert_that_arrives_while_the_runner_finishes_is_caught_by_its_last_look(
    published, owner, monkeypatch
):
    """The race a runner must not lose: the alert finds the key taken, then the runner gives it back."""
    recorder = RecorderFactory(owner=owner, symbol="ES")
    make_trader(recorder)
    sent: list[tuple[str, int]] = []
    monkeypatch.setattr(
        queue, "task_publish", lambda name, object_id, **options: sent.append((name, object_id))
    )
    first = stored_signal(recorder, price=Decimal("5000"))
    assert queue.runner_claim(recorder.pk)  # the webhook took the key and sent the message for `first`
    real_release = queue.runner_release
    late: list[Signal] = []

    def release_after_an_alert(recorder_id: int) -> None:
        if not late:
            # Committed just before the runner gives the key back: its wake-up found the key taken.
            late.append(stored_signal(recorder, action="close", price=Decimal("5001")))
            queue.recorder_wake(recorder_id, late[0].pk)
        real_release(recorder_id)

    monkeypatch.setattr(queue, "runner_release", release_after_an_alert)
    signal_process(signal_id=first.pk)

    assert published == []  # the late alert sent nothing ...
    late[0].refresh_from_db()
    assert late[0].status == Signal.Status.PROCESSED  # ... and was traded by the same runner


def test_a_broker_that_is_down_turns_the_decision_into_a_retry_task_and_the_runner_goes_on(
    task_queue, owner, faulty_broker
):
    recorder = RecorderFactory(owner=owner, symbol="ES")
    make_trader(recorder)
    faulty_broker.unavailable()
    signal = stored_signal(recorder, price=Decimal("5000"))

    signal_process(signal_id=signal.pk)

    [decision] = Decision.objects.all()
    assert task_queue.messages == [("trader_signal_execute", decision.pk)]
    assert Order.objects.get(role=Order.Role.ENTRY).status == Order.Status.PENDING  # certainly not sent
    task_queue.run()
    assert Order.objects.get(role=Order.Role.ENTRY).status == Order.Status.FILLED


@pytest.mark.django_db(transaction=True)
def test_one_alert_reaches_every_account_side_by_side_and_a_slow_account_holds_back_none(
    settings, client, owner, monkeypatch
):
    settings.EXECUTION_THREADS = 4
    recorder = RecorderFactory(owner=owner, symbol="ES")
    traders = [make_trader(recorder) for _ in range(3)]
    slow = traders[0].account
    others_placed = threading.Barrier(3, timeout=THREAD_TIMEOUT)
    real_place = PaperBroker.place_order
    placed_by: list[str] = []

    class SlowFirstAccount(PaperBroker):
        def place_order(self, order):
            placed_by.append(threading.current_thread().name)
            if self.broker_account_id == slow.pk:
                # Answers only once both other accounts have their entry: run in turn, this would hang.
                others_placed.wait()
            placed = real_place(self, order)
            if self.broker_account_id != slow.pk:
                others_placed.wait()
            return placed

    monkeypatch.setattr(registry, "broker_for_account", lambda account, **options: SlowFirstAccount(account))
    monkeypatch.setattr(queue, "task_publish", lambda *args, **options: None)
    signal = Signal.objects.get(
        pk=client.post(
            f"/webhook/{recorder.webhook_token}", data=alert(price=5000), content_type="application/json"
        ).json()["signal"]
    )

    signal_process(signal_id=signal.pk)

    assert sorted(Decision.objects.values_list("status", flat=True)) == ["executed"] * 3
    assert len(set(placed_by)) == 3  # three threads, each with its own account
    assert PaperOrder.objects.filter(status=PaperOrder.Status.FILLED).count() == 3
    accounts = set(PaperOrder.objects.values_list("broker_account_id", flat=True))
    assert accounts == {trader.account_id for trader in traders}
    assert BrokerAccount.objects.count() == 3
