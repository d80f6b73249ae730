"""Pages: the signal log, one signal, orders, positions, the live dashboard part, the kill switch toggle."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.template.loader import render_to_string
from django.utils import timezone

from trading.models import KillSwitch, Signal
from trading.tests.execution_support import *  # noqa: F403  fixtures
from trading.tests.execution_support import make_trader, stored_signal
from trading.tests.factories import BrokerAccountFactory, RecorderFactory

pytestmark = pytest.mark.django_db

PAGES = ["/signals/", "/orders/", "/positions/", "/dashboard/live"]


@pytest.fixture
def traded(task_queue, owner):
    recorder = RecorderFactory(
        owner=owner,
        name="Opening range",
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


@pytest.mark.parametrize("path", PAGES)
def test_pages_need_a_login(client, path):
    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"].startswith("/login")


@pytest.mark.parametrize("path", PAGES)
def test_pages_need_an_approved_account(client, pending_user, path):
    client.force_login(pending_user)

    assert client.get(path).status_code == 403


def test_the_signal_log_lists_the_users_signals_with_their_traders_outcome(owner_client, traded):
    signal, _ = traded

    page = owner_client.get("/signals/").content.decode()

    assert f"/signals/{signal.pk}" in page
    assert "Opening range" in page
    assert "Orders sent" in page  # the decision's badge


def test_the_signal_log_filters_by_recorder_status_and_day(owner_client, owner):
    first = RecorderFactory(owner=owner, name="First")
    second = RecorderFactory(owner=owner, name="Second")
    old = stored_signal(first, received_at=timezone.now() - timedelta(days=3))
    rejected = stored_signal(second, status=Signal.Status.REJECTED, reason="Could not read the alert")
    # The day is the user's own: the log shows days in the time zone of their profile, not the server's.
    today = timezone.localdate(timezone=ZoneInfo(owner.time_zone)).isoformat()

    by_recorder = owner_client.get(f"/signals/?recorder={first.pk}").content.decode()
    by_status = owner_client.get("/signals/?status=rejected").content.decode()
    by_day = owner_client.get(f"/signals/?day={today}").content.decode()

    assert f"/signals/{old.pk}" in by_recorder
    assert f"/signals/{rejected.pk}" not in by_recorder
    assert f"/signals/{rejected.pk}" in by_status
    assert f"/signals/{old.pk}" not in by_status
    assert f"/signals/{rejected.pk}" in by_day
    assert f"/signals/{old.pk}" not in by_day


def test_a_filter_that_makes_no_sense_is_explained_not_fatal(owner_client, stranger):
    theirs = RecorderFactory(owner=stranger)

    response = owner_client.get(f"/signals/?recorder={theirs.pk}&status=nope&day=yesterday")

    assert response.status_code == 200
    page = response.content.decode()
    assert "not one of yours" in page
    assert "no signal status" in page
    assert "such as 2026-03-01" in page


def test_the_signal_log_costs_the_same_queries_however_long_it_is(
    owner_client, owner, task_queue, django_assert_max_num_queries
):
    recorder = RecorderFactory(owner=owner, symbol="ES")
    make_trader(recorder)
    for _ in range(12):
        task_queue.publish("signal_process", stored_signal(recorder).pk)
    task_queue.run()

    with django_assert_max_num_queries(10):
        response = owner_client.get("/signals/")
    assert response.status_code == 200


def test_a_signal_page_shows_the_raw_body_escaped_the_decision_and_the_orders(owner_client, owner, traded):
    signal, trader = traded
    Signal.objects.filter(pk=signal.pk).update(
        raw_body='{"action": "buy", "comment": "<script>alert(1)</script>"}'
    )

    page = owner_client.get(f"/signals/{signal.pk}").content.decode()

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page
    assert trader.account.name in page
    for order in signal.orders.all():
        assert order.client_id in page
    assert "Take profit" in page
    assert "Stop loss" in page


def test_someone_elses_signal_is_not_found(stranger_client, traded):
    signal, _ = traded

    assert stranger_client.get(f"/signals/{signal.pk}").status_code == 404
    assert f"/signals/{signal.pk}" not in stranger_client.get("/signals/").content.decode()


def test_the_orders_and_positions_pages_show_only_the_users_own(client, owner, stranger, traded):
    _, trader = traded
    client.force_login(owner)

    orders = client.get("/orders/").content.decode()
    positions = client.get("/positions/").content.decode()

    assert "Take profit" in orders
    assert trader.account.name in orders
    assert "+1" in positions
    assert "5000" in positions
    client.force_login(stranger)
    assert trader.account.name not in client.get("/orders/").content.decode()
    assert trader.account.name not in client.get("/positions/").content.decode()


def test_the_dashboard_include_polls_the_live_part_which_shows_today(owner_client, traded, rf, owner):
    include = render_to_string("trading/execution/_dashboard_live.html")
    live = owner_client.get("/dashboard/live")

    assert 'hx-get="/dashboard/live"' in include
    assert "every 5s" in include
    assert live.status_code == 200
    page = live.content.decode()
    assert "Signals today" in page
    assert "Opening range" in page
    assert "<html" not in page


def test_a_user_stops_and_resumes_their_own_trading_from_the_page(owner_client, owner):
    response = owner_client.post("/killswitch", {"scope": "user", "engaged": "on", "next": "/signals/"})

    assert response.status_code == 302
    assert response["Location"] == "/signals/"
    switch = KillSwitch.objects.get(scope="user", user=owner)
    assert switch.engaged
    assert switch.changed_by == owner
    owner_client.post("/killswitch", {"scope": "user", "engaged": "off"})
    switch.refresh_from_db()
    assert not switch.engaged


def test_an_account_switch_is_for_the_users_own_accounts_only(owner_client, owner, stranger):
    mine = BrokerAccountFactory(owner=owner)
    theirs = BrokerAccountFactory(owner=stranger)

    assert (
        owner_client.post(
            "/killswitch", {"scope": "account", "account": theirs.pk, "engaged": "on"}
        ).status_code
        == 404
    )
    owner_client.post("/killswitch", {"scope": "account", "account": mine.pk, "engaged": "on"})

    assert list(KillSwitch.objects.values_list("broker_account", "engaged")) == [(mine.pk, True)]
    assert "stopped" in owner_client.get("/positions/").content.decode()


def test_only_staff_stop_everyone(owner_client, client, staff):
    assert owner_client.post("/killswitch", {"scope": "global", "engaged": "on"}).status_code == 404
    client.force_login(staff)
    client.post("/killswitch", {"scope": "global", "engaged": "on", "reason": "exchange halted"})

    switch = KillSwitch.objects.get(scope="global")
    assert (switch.engaged, switch.reason) == (True, "exchange halted")


def test_the_toggle_answers_htmx_with_the_live_part_and_refuses_get(owner_client):
    response = owner_client.post("/killswitch", {"scope": "user", "engaged": "on"}, HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    assert "Kill switch on" in response.content.decode()
    assert owner_client.get("/killswitch").status_code == 405


def test_an_offsite_next_is_not_followed(owner_client):
    response = owner_client.post(
        "/killswitch", {"scope": "user", "engaged": "on", "next": "https://evil.example/"}
    )

    assert response["Location"] == "/positions/"
