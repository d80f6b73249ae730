"""Waking the dispatcher: a lone alert at once, a burst with two messages a window, no alert left behind."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest
from django.core.cache import cache

from trading import claims
from trading.models import Signal
from trading.services import queue
from trading.services.queue import DISPATCH_MARGIN_SECONDS, DISPATCH_WINDOW_SECONDS, signals_nudge
from trading.services.queue import signals_nudge as real_signals_nudge
from trading.services.signals import signals_dispatch
from trading.tests.execution_support import *  # noqa: F403  fixtures
from trading.tests.execution_support import make_trader, stored_signal
from trading.tests.factories import RecorderFactory

pytestmark = pytest.mark.django_db

TRAILING = DISPATCH_WINDOW_SECONDS + DISPATCH_MARGIN_SECONDS


@dataclass
class Published:
    """Task messages as sent, with their delay."""

    messages: list[tuple[str, int | None, float | None]] = field(default_factory=list)

    def __call__(
        self,
        task_name: str,
        object_id: int | None,
        *,
        countdown: float | None = None,
        expires: float | None = None,
    ) -> None:
        self.messages.append((task_name.rsplit(".", 1)[-1], object_id, countdown))


@pytest.fixture
def published(monkeypatch) -> Published:
    """The real nudge (each test has a window of its own, see conftest), publishing into a list."""
    sent = Published()
    monkeypatch.setattr(queue, "task_publish", sent)
    monkeypatch.setattr(queue, "signals_nudge", real_signals_nudge)
    return sent


def another_process(monkeypatch) -> None:
    """From here on the nudges come from a process that opened no window of its own."""
    queue.dispatch_window_forget()


def test_the_first_alert_of_a_window_is_dispatched_at_once_and_again_after_the_window(published):
    signals_nudge()

    assert published.messages == [
        ("signals_dispatch", None, None),
        ("signals_dispatch", None, TRAILING),
    ]


def test_alerts_in_an_open_window_send_nothing_in_this_process_or_any_other(published, monkeypatch):
    monkeypatch.setattr(queue, "DISPATCH_WINDOW_SECONDS", 30.0)  # however slow this machine is
    signals_nudge()
    signals_nudge()  # same process, same window
    another_process(monkeypatch)
    signals_nudge()  # the shared window is still open

    assert len(published.messages) == 2


def test_once_the_window_is_over_the_next_alert_opens_a_new_one(published, monkeypatch):
    signals_nudge()
    time.sleep(TRAILING)
    another_process(monkeypatch)

    signals_nudge()

    assert [countdown for _, _, countdown in published.messages] == [None, TRAILING, None, TRAILING]


def test_when_the_window_cannot_be_checked_the_alert_is_dispatched_anyway(published, monkeypatch, settings):
    def unreachable(*args, **kwargs):
        raise ConnectionError("Redis is restarting")

    settings.REDIS_URL = ""
    monkeypatch.setattr(cache, "add", unreachable)

    signals_nudge()

    assert [name for name, _, _ in published.messages] == ["signals_dispatch", "signals_dispatch"]


def test_an_alert_committed_after_the_first_dispatch_ran_is_caught_by_the_trailing_one(
    task_queue, monkeypatch, owner
):
    """The race a window must not lose: the dispatch at once has run, the next alert finds the window open."""
    monkeypatch.setattr(queue, "signals_nudge", real_signals_nudge)
    monkeypatch.setattr(queue, "DISPATCH_WINDOW_SECONDS", 30.0)  # processing the first never ends it
    recorder = RecorderFactory(owner=owner, symbol="ES")
    make_trader(recorder)

    first = stored_signal(recorder)
    signals_nudge()
    assert task_queue.names() == ["signals_dispatch", "signals_dispatch"]
    trailing = task_queue.messages.pop()  # due when the window is over
    task_queue.run()  # the dispatch at once: the first signal is processed
    assert Signal.objects.get(pk=first.pk).status == Signal.Status.PROCESSED
    second = stored_signal(recorder, action="close")
    signals_nudge()  # the window is open: nothing is sent
    assert task_queue.messages == []

    task_queue.messages.append(trailing)
    task_queue.run()

    assert Signal.objects.get(pk=first.pk).status == Signal.Status.PROCESSED
    assert Signal.objects.get(pk=second.pk).status == Signal.Status.PROCESSED


def test_a_dispatch_queues_the_oldest_pending_signal_of_each_recorder_once(published, owner):
    busy, quiet, idle = (RecorderFactory(owner=owner, symbol="ES") for _ in range(3))
    oldest = stored_signal(busy)
    stored_signal(busy, action="sell")
    stored_signal(busy, action="close")
    only = stored_signal(quiet)
    done = stored_signal(idle)
    Signal.objects.filter(pk=done.pk).update(status=Signal.Status.PROCESSED)

    assert signals_dispatch() == 2

    assert published.messages == [("signal_process", oldest.pk, None), ("signal_process", only.pk, None)]


def test_one_message_works_through_a_recorders_whole_backlog_in_order(task_queue, owner):
    recorder = RecorderFactory(owner=owner, symbol="ES")
    make_trader(recorder)
    backlog = [stored_signal(recorder, action=action) for action in ("buy", "close", "sell", "close")]
    task_queue.publish("signals_dispatch", None)

    task_queue.run()

    handled = [
        (name, object_id) for name, object_id, _ in task_queue.handled if name != "trader_signal_execute"
    ]
    assert handled == [("signals_dispatch", None), ("signal_process", backlog[0].pk)]
    statuses = [Signal.objects.get(pk=signal.pk).status for signal in backlog]
    assert statuses == [Signal.Status.PROCESSED] * 4


def test_a_task_that_makes_way_after_catching_up_hands_the_rest_of_the_backlog_on(
    task_queue, owner, monkeypatch
):
    monkeypatch.setattr(claims, "CATCH_UP_SECONDS", 0.0)  # makes way after every signal
    recorder = RecorderFactory(owner=owner, symbol="ES")
    make_trader(recorder)
    backlog = [stored_signal(recorder, action=action) for action in ("buy", "close", "sell")]
    task_queue.publish("signals_dispatch", None)

    task_queue.run()

    handed = [object_id for name, object_id, _ in task_queue.handled if name == "signal_process"]
    assert handed == [signal.pk for signal in backlog]
    statuses = [Signal.objects.get(pk=signal.pk).status for signal in backlog]
    assert statuses == [Signal.Status.PROCESSED] * 3
