"""After an average-down fills, the position's protection is re-planned from its new size and average."""

from __future__ import annotations

from decimal import Decimal

import pytest

from trading.brokers import registry
from trading.brokers.base import OrderOutcomeUnknown
from trading.brokers.paper import PaperBroker
from trading.models import Order, PaperOrder, PaperPosition, Signal
from trading.services.prices import price_record
from trading.services.sync import account_sync
from trading.tests.execution_support import *  # noqa: F403  fixtures
from trading.tests.execution_support import make_trader, stored_signal
from trading.tests.factories import RecorderFactory

pytestmark = pytest.mark.django_db

AVERAGE_DOWN = {
    "avg_down_enabled": True,
    "avg_down_amount": 1,
    "avg_down_point": Decimal(4),
    "avg_down_units": "ticks",
}


def averaging_recorder(owner, **settings):
    """ES: one take-profit and a stop 8 ticks away, an average-down 4 ticks (a point) against the entry."""
    values = {"tp_targets": [{"value": 8, "trim": None}], "sl_enabled": True, "sl_amount": Decimal(8)}
    return RecorderFactory(owner=owner, symbol="ES", **{**values, **AVERAGE_DOWN, **settings})


def process(task_queue, signal: Signal) -> None:
    task_queue.publish("signal_process", signal.pk)
    task_queue.run()


def paper_position(trader) -> int:
    row = PaperPosition.objects.filter(broker_account=trader.account, root="ES").first()
    return row.quantity if row else 0


def working_paper(trader, *order_types: str) -> list[tuple[str, int, Decimal | None]]:
    rows = PaperOrder.objects.filter(
        broker_account=trader.account, status="working", order_type__in=order_types
    ).order_by("pk")
    return [(row.action, row.quantity, row.stop_price or row.price) for row in rows]


def replanned(average_down: Order) -> dict[str, Order]:
    rows = Order.objects.filter(decision=average_down.decision, plan_key__endswith=f"-a{average_down.pk}")
    return {row.plan_key: row for row in rows}


def test_an_average_down_fill_replaces_the_exits_with_ones_for_the_whole_position_from_its_new_average(
    task_queue, owner
):
    trader = make_trader(averaging_recorder(owner))
    process(task_queue, stored_signal(trader.recorder, price=Decimal("5000")))
    average_down = Order.objects.get(plan_key="avg1")
    first_exits = list(Order.objects.filter(plan_key__in=["tp1", "sl1"]))

    price_record(owner=owner, symbol="ES", price=Decimal("4999"))

    assert paper_position(trader) == 2
    for order in first_exits:
        order.refresh_from_db()
        assert order.status == Order.Status.CANCELLED
    new = replanned(average_down)
    key = f"-a{average_down.pk}"
    assert {name: (row.status, row.quantity) for name, row in new.items()} == {
        f"tp1{key}": ("working", 2),
        f"sl1{key}": ("working", 2),
    }
    # The average is 4999.5: the target is 8 ticks above it and the stop 8 ticks below.
    assert new[f"tp1{key}"].price == Decimal("5001.5")
    assert new[f"sl1{key}"].stop_price == Decimal("4997.5")
    assert new[f"tp1{key}"].oco_group == new[f"sl1{key}"].oco_group != ""
    assert working_paper(trader, "Limit") == [("Sell", 2, Decimal("5001.5"))]
    assert working_paper(trader, "Stop") == [("Sell", 2, Decimal("4997.5"))]


def test_the_take_profit_re_planned_after_an_average_down_closes_the_whole_position_and_its_stop(
    task_queue, owner
):
    trader = make_trader(averaging_recorder(owner))
    process(task_queue, stored_signal(trader.recorder, price=Decimal("5000")))
    price_record(owner=owner, symbol="ES", price=Decimal("4999"))

    price_record(owner=owner, symbol="ES", price=Decimal("5002"))

    assert paper_position(trader) == 0
    assert working_paper(trader, "Limit", "Stop") == []


def test_syncing_again_after_the_re_plan_sends_nothing_more(task_queue, owner):
    trader = make_trader(averaging_recorder(owner))
    process(task_queue, stored_signal(trader.recorder, price=Decimal("5000")))
    price_record(owner=owner, symbol="ES", price=Decimal("4999"))
    orders_before = Order.objects.count()
    paper_before = PaperOrder.objects.count()

    report = account_sync(account=trader.account)
    account_sync(account=trader.account)

    assert report.protection_replanned == 0
    assert (Order.objects.count(), PaperOrder.objects.count()) == (orders_before, paper_before)
    assert working_paper(trader, "Stop") == [("Sell", 2, Decimal("4997.5"))]


def test_a_short_position_is_re_planned_above_and_below_its_new_average(task_queue, owner):
    trader = make_trader(averaging_recorder(owner))
    process(task_queue, stored_signal(trader.recorder, action="sell", price=Decimal("5000")))

    price_record(owner=owner, symbol="ES", price=Decimal("5001"))

    assert paper_position(trader) == -2
    assert working_paper(trader, "Limit") == [("Buy", 2, Decimal("4998.5"))]
    assert working_paper(trader, "Stop") == [("Buy", 2, Decimal("5002.5"))]


def test_the_re_planned_protection_uses_the_sub_account_multiplier(task_queue, owner):
    trader = make_trader(averaging_recorder(owner), multiplier=2)
    process(task_queue, stored_signal(trader.recorder, price=Decimal("5000")))

    price_record(owner=owner, symbol="ES", price=Decimal("4999"))

    assert paper_position(trader) == 4
    assert working_paper(trader, "Limit") == [("Sell", 4, Decimal("5001.5"))]
    assert working_paper(trader, "Stop") == [("Sell", 4, Decimal("4997.5"))]


def test_no_new_protection_is_sent_while_the_old_exits_cannot_be_confirmed_cancelled(
    task_queue, owner, monkeypatch
):
    trader = make_trader(averaging_recorder(owner))
    process(task_queue, stored_signal(trader.recorder, price=Decimal("5000")))
    average_down = Order.objects.get(plan_key="avg1")

    class CancelTimesOut(PaperBroker):
        def cancel_order(self, broker_order_id):
            raise OrderOutcomeUnknown("The cancel timed out: check before sending it again.")

    monkeypatch.setattr(registry, "broker_for_account", lambda account, **options: CancelTimesOut(account))
    price_record(owner=owner, symbol="ES", price=Decimal("4999"))
    monkeypatch.undo()

    assert paper_position(trader) == 2
    assert replanned(average_down) == {}
    assert working_paper(trader, "Stop") == [("Sell", 1, Decimal("4998"))]  # the old stop, not stacked on

    report = account_sync(account=trader.account)

    assert report.protection_replanned == 2
    assert working_paper(trader, "Stop") == [("Sell", 2, Decimal("4997.5"))]
    assert working_paper(trader, "Limit") == [("Sell", 2, Decimal("5001.5"))]
