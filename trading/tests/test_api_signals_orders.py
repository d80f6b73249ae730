"""/api/signals/, /api/orders/, /api/positions/, /api/prices/: owner-scoped, paginated, token or session."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from trading.models import LastPrice, Order, PaperOrder, Signal
from trading.services.prices import price_record
from trading.tests.execution_support import *  # noqa: F403  fixtures
from trading.tests.execution_support import make_trader, stored_signal
from trading.tests.factories import RecorderFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def traded(task_queue, owner):
    """One of the owner's signals taken all the way to a filled entry with working take-profit and stop."""
    recorder = RecorderFactory(
        owner=owner,
        symbol="ES",
        tp_targets=[{"value": 8, "trim": None}],
        sl_enabled=True,
        sl_amount=Decimal(8),
    )
    trader = make_trader(recorder)
    signal = stored_signal(recorder, price=Decimal("5000"))
    task_queue.publish("signal_process", signal.pk)
    task_queue.run()
    return signal, trader


def test_signals_are_listed_with_the_users_decisions_and_orders(owner_api, traded):
    signal, trader = traded

    response = owner_api.get("/api/signals/")

    assert response.status_code == 200
    assert set(response.data) == {"count", "next", "previous", "results"}
    [item] = response.data["results"]
    assert item["id"] == signal.pk
    assert (item["status"], item["action"], item["symbol"], item["price"]) == (
        "processed",
        "buy",
        "ES1!",
        "5000.0000000000",
    )
    assert item["raw_body"] == signal.raw_body
    [decision] = item["decisions"]
    assert (decision["trader"], decision["account"], decision["status"]) == (
        trader.pk,
        trader.account_id,
        "executed",
    )
    assert {order["role"]: order["status"] for order in decision["orders"]} == {
        "entry": "filled",
        "take_profit": "working",
        "stop_loss": "working",
    }
    assert {
        "client_id",
        "broker_order_id",
        "action",
        "order_type",
        "quantity",
        "price",
        "stop_price",
        "error",
    } <= set(decision["orders"][0])


def test_signals_filter_by_recorder_and_status(owner_api, owner):
    first = RecorderFactory(owner=owner)
    second = RecorderFactory(owner=owner)
    stored_signal(first)
    rejected = stored_signal(second, status=Signal.Status.REJECTED)

    by_recorder = owner_api.get(f"/api/signals/?recorder={second.pk}")
    by_status = owner_api.get("/api/signals/?status=rejected")
    nonsense = owner_api.get("/api/signals/?status=exploded")

    assert [item["id"] for item in by_recorder.data["results"]] == [rejected.pk]
    assert [item["id"] for item in by_status.data["results"]] == [rejected.pk]
    assert nonsense.data["count"] == 0


def test_a_stranger_sees_none_of_the_owners_signals_orders_or_positions(stranger_api, traded):
    signal, _ = traded

    assert stranger_api.get("/api/signals/").data["count"] == 0
    assert stranger_api.get(f"/api/signals/{signal.pk}/").status_code == 404
    assert stranger_api.get("/api/orders/").data["count"] == 0
    order = Order.objects.first()
    assert stranger_api.get(f"/api/orders/{order.pk}/").status_code == 404
    assert stranger_api.get("/api/positions/").data["count"] == 0


def test_a_follower_of_a_public_recorder_sees_the_signal_with_only_their_own_decision(task_queue, owner):
    recorder = RecorderFactory(owner=owner, symbol="ES", is_private=False)
    make_trader(recorder)
    follower = UserFactory()
    theirs = make_trader(recorder, owner=follower)
    signal = stored_signal(recorder)
    task_queue.publish("signal_process", signal.pk)
    task_queue.run()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=follower).key}")

    response = api.get(f"/api/signals/{signal.pk}/")

    assert response.status_code == 200
    assert [decision["trader"] for decision in response.data["decisions"]] == [theirs.pk]
    assert {order["account"] for order in api.get("/api/orders/").data["results"]} == {theirs.account_id}


def test_orders_and_positions_of_the_owner(owner_api, traded):
    _, trader = traded

    orders = owner_api.get("/api/orders/?status=working").data
    positions = owner_api.get("/api/positions/").data

    assert orders["count"] == 2
    assert {order["role"] for order in orders["results"]} == {"take_profit", "stop_loss"}
    [position] = positions["results"]
    assert (position["account"], position["symbol"], position["quantity"], position["avg_price"]) == (
        trader.account_id,
        "ES",
        1,
        "5000.00000000",
    )
    assert position["realized_pnl"] == "0.00"


def test_a_posted_price_fills_the_users_resting_paper_orders(owner_api, owner, traded):
    response = owner_api.post("/api/prices/", {"symbol": "CME_MINI:ES1!", "price": "5002.25"}, format="json")

    assert response.status_code == 201
    assert response.data["symbol"] == "ES"
    assert response.data["price"] == "5002.25"
    assert response.data["filled_accounts"] == [traded[1].account_id]
    assert LastPrice.objects.get(owner=owner, symbol="ES").price == Decimal("5002.25")
    assert Order.objects.get(role="take_profit").status == "filled"
    assert owner_api.get("/api/positions/").data["results"][0]["realized_pnl"] == "100.00"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"symbol": "ZZTOP", "price": "1"}, "symbol"),
        ({"symbol": "ES", "price": "-5"}, "price"),
        ({"symbol": "ES", "price": "abc"}, "price"),
        ({"symbol": "ES"}, "price"),
        ({"price": "5000"}, "symbol"),
    ],
)
def test_a_bad_price_is_refused_with_the_field_at_fault(owner_api, payload, field):
    response = owner_api.post("/api/prices/", payload, format="json")

    assert response.status_code == 400
    assert field in response.data
    assert LastPrice.objects.count() == 0


def test_someone_elses_price_does_not_move_the_owners_paper_book(stranger_api, traded):
    stranger_api.post("/api/prices/", {"symbol": "ES", "price": "5010"}, format="json")

    assert PaperOrder.objects.filter(status="working").count() == 2


def test_the_api_needs_an_approved_user(client, pending_user, traded):
    anonymous = APIClient()
    pending = APIClient()
    pending.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=pending_user).key}")

    for path in ("/api/signals/", "/api/orders/", "/api/positions/"):
        assert anonymous.get(path).status_code in (401, 403)
        assert pending.get(path).status_code == 403
    assert anonymous.post("/api/prices/", {"symbol": "ES", "price": "1"}).status_code in (401, 403)
    assert pending.post("/api/prices/", {"symbol": "ES", "price": "1"}).status_code == 403


def test_the_session_works_for_the_api_too(owner_client, traded):
    response = owner_client.get("/api/signals/")

    assert response.status_code == 200
    assert response.json()["count"] == 1


def test_the_signal_list_costs_the_same_queries_however_many_signals(
    owner_api, owner, task_queue, django_assert_max_num_queries
):
    recorder = RecorderFactory(owner=owner, symbol="ES")
    make_trader(recorder)
    for _ in range(3):
        task_queue.publish("signal_process", stored_signal(recorder).pk)
    task_queue.run()

    with django_assert_max_num_queries(8):
        response = owner_api.get("/api/signals/")
    assert response.data["count"] == 3

    for _ in range(5):
        task_queue.publish("signal_process", stored_signal(recorder).pk)
    task_queue.run()
    with django_assert_max_num_queries(8):
        assert owner_api.get("/api/signals/").data["count"] == 8


def test_prices_record_the_signal_owner_as_a_service(owner):
    update = price_record(owner=owner, symbol="NQZ6", price="18000.5")

    assert (update.symbol, update.price, update.filled_accounts) == ("NQ", Decimal("18000.5"), [])
    with pytest.raises(ValueError, match="not a supported contract"):
        price_record(owner=owner, symbol="XYZ9", price="1")
