"""Test support for the execution pipeline: an in-process task queue, a broker with injectable faults, alerts.

The `task_queue` fixture (root conftest) runs a TaskQueue; import the other fixtures into a test module with
`from trading.tests.execution_support import *`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from trading.brokers import registry
from trading.brokers.base import BrokerUnavailable, OrderOutcomeUnknown, OrderRejected
from trading.brokers.paper import PaperBroker, paper_account_id
from trading.errors import RetryLater, WaitForEarlier
from trading.models import BrokerAccount, Decision, Order, Signal
from trading.services.execution import trader_signal_execute
from trading.services.orders import order_settle
from trading.services.signals import signal_process
from trading.tests.factories import BrokerAccountFactory, RecorderFactory, TraderFactory, UserFactory

__all__ = [
    "FaultPlan",
    "FaultyBroker",
    "TaskQueue",
    "alert",
    "decisions_of",
    "faulty_broker",
    "make_trader",
    "orders_of",
    "stored_signal",
]


@dataclass
class TaskQueue:
    """Celery's place in tests: messages are recorded when published and run in order by `run()`."""

    capture: Callable[..., Any]
    messages: list[tuple[str, int]] = field(default_factory=list)
    retries: list[tuple[int, str]] = field(default_factory=list)
    handled: list[tuple[str, int, Any]] = field(default_factory=list)

    def publish(
        self,
        task_name: str,
        object_id: int | None,
        *,
        countdown: float | None = None,
        expires: float | None = None,
    ) -> None:
        """Record a message under the task's short name (`signal_process` for its full task name)."""
        self.messages.append((task_name.rsplit(".", 1)[-1], object_id))

    def wake(self, recorder_id: int, signal_id: int) -> None:
        """What an accepted alert asks for: its recorder's runner (the runner key has its own tests)."""
        self.publish("signal_process", signal_id)

    def names(self) -> list[str]:
        return [name for name, _ in self.messages]

    def run_one(self) -> Any:
        name, object_id = self.messages.pop(0)
        with self.capture(execute=True):
            try:
                result = self._run(name, object_id)
            except WaitForEarlier:
                self.messages.append((name, object_id))  # what the task does: look again a little later
                result = "waiting"
        self.handled.append((name, object_id, result))
        return result

    def _run(self, name: str, object_id: int) -> Any:
        if name == "signal_process":
            result = signal_process(signal_id=object_id)
        elif name == "trader_signal_execute":
            try:
                result = trader_signal_execute(decision_id=object_id)
            except RetryLater as retry:
                self.retries.append((object_id, retry.message))
                result = "retry"
        elif name == "order_settle":
            result = order_settle(order_id=object_id)
        else:
            raise AssertionError(f"unexpected task {name}")
        return result

    def run(self, limit: int = 10_000) -> None:
        """Run every queued message, and those they queue, like a worker would."""
        steps = 0
        while self.messages:
            steps += 1
            assert steps <= limit, "the queue never empties"
            self.run_one()


class FaultyBroker(PaperBroker):
    """The paper broker with faults a test injects on its next order calls."""

    plan: FaultPlan

    def _call(self, name: str, send: Callable[[], Any]) -> Any:
        self.plan.calls.append(name)
        if not self.plan.faults:
            return send()
        when, error = self.plan.faults.pop(0)
        if when == "after":
            send()  # the broker took it; the answer is lost on the way back
        raise error

    def place_order(self, order):
        return self._call("place_order", lambda: super(FaultyBroker, self).place_order(order))

    def place_bracket(self, bracket):
        return self._call("place_bracket", lambda: super(FaultyBroker, self).place_bracket(bracket))

    def liquidate_position(self, account_id, symbol):
        return self._call(
            "liquidate_position", lambda: super(FaultyBroker, self).liquidate_position(account_id, symbol)
        )


@dataclass
class FaultPlan:
    """Faults to raise on the next order calls of every paper account, and the calls made."""

    faults: list[tuple[str, Exception]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def unavailable(self) -> FaultPlan:
        self.faults.append(("before", BrokerUnavailable("The broker is down for maintenance.")))
        return self

    def rejected(self, text: str = "Max position limit reached for this account") -> FaultPlan:
        self.faults.append(("before", OrderRejected(text, reason="MaxPosLimitReached")))
        return self

    def unknown(self, *, sent: bool) -> FaultPlan:
        error = OrderOutcomeUnknown(
            "The connection dropped after the order was sent: check before resending."
        )
        self.faults.append(("after" if sent else "before", error))
        return self


@pytest.fixture
def faulty_broker(monkeypatch) -> FaultPlan:
    """Every paper account trades on a paper broker whose next order calls fail as the test says."""
    plan = FaultPlan()
    real = registry.broker_for_account

    def broker_for_account(account: BrokerAccount, **options):
        if account.kind != BrokerAccount.Kind.PAPER:
            return real(account, **options)
        broker = FaultyBroker(account)
        broker.plan = plan
        return broker

    monkeypatch.setattr(registry, "broker_for_account", broker_for_account)
    return plan


def alert(action: str = "buy", **fields: Any) -> bytes:
    """A JSON alert body such as TradingView sends from the ready-to-paste message."""
    body = {"action": action, "ticker": "ES1!", "price": 5000, **fields}
    return json.dumps({key: value for key, value in body.items() if value is not None}).encode()


def stored_signal(
    recorder, *, action: str = "buy", received_at: datetime | None = None, **values: Any
) -> Signal:
    """A signal row as the webhook stores it, pending."""
    values.setdefault("price", Decimal(5000))
    values.setdefault("ticker", "ES1!")
    return Signal.objects.create(
        recorder=recorder,
        received_at=received_at or timezone.now(),
        raw_body=json.dumps({"action": action}),
        action=action,
        **values,
    )


def make_trader(recorder=None, *, owner=None, multiplier: int = 1, **settings: Any):
    """A trader on a new paper account of `owner` (the recorder's owner by default)."""
    recorder = recorder or RecorderFactory(owner=owner or UserFactory())
    owner = owner or recorder.owner
    account = BrokerAccountFactory(owner=owner)
    return TraderFactory(
        recorder=recorder,
        account=account,
        subaccounts=[(paper_account_id(account.pk), multiplier)],
        **settings,
    )


def decisions_of(signal: Signal) -> list[Decision]:
    return list(Decision.objects.filter(signal=signal).order_by("pk"))


def orders_of(signal: Signal) -> list[Order]:
    return list(Order.objects.filter(signal=signal).order_by("account_id", "sequence"))
