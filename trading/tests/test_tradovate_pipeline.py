"""TradingView alerts to orders on a Tradovate account, end to end: the webhook, the pipeline and the fake
Tradovate server over real HTTP, with the exact requests Tradovate receives.

The fixtures here (a running fake, settings pointing at it, a connected account) are shared with the
reconciliation and connection tests.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from trading.brokers import registry
from trading.brokers.base import SubAccount
from trading.models import BrokerAccount, Decision, Order, Position, ReconcileAction
from trading.services.broker_accounts import broker_account_sync_subaccounts
from trading.services.orders import order_settle
from trading.services.reconciliation.record import ReconcileReport
from trading.services.reconciliation.run import account_reconcile, accounts_to_reconcile
from trading.tests.execution_support import *  # noqa: F403  fixtures
from trading.tests.execution_support import TaskQueue
from trading.tests.factories import RecorderFactory, TraderFactory, TradovateAccountFactory
from trading.tests.fake_tradovate import (
    APP_ID,
    APP_VERSION,
    CID,
    DEMO_ACCOUNT_ID,
    DEMO_ACCOUNT_NAME,
    PASSWORD,
    SEC,
    USERNAME,
    FakeTradovate,
    running_fake_tradovate,
)

# Shared with the reconciliation and connection tests (`from ... import *` takes these names, no tests).
__all__ = [
    "ACCOUNT_ID",
    "CANCEL",
    "LIQUIDATE",
    "LOGIN",
    "OCO",
    "OSO",
    "PLACE",
    "account",
    "fake",
    "order_changes",
    "orders",
    "reconcile",
    "recorder",
    "send_alert",
    "trade_on",
    "tradovate_settings",
]

pytestmark = pytest.mark.django_db

ACCOUNT_ID = str(DEMO_ACCOUNT_ID)
LOGIN = "/auth/accesstokenrequest"
RENEW = "/auth/renewaccesstoken"
OSO = "/order/placeoso"
OCO = "/order/placeoco"
PLACE = "/order/placeorder"
CANCEL = "/order/cancelorder"
LIQUIDATE = "/order/liquidateposition"
ORDER_CHANGES = (OSO, PLACE, CANCEL, LIQUIDATE, "/order/modifyorder", "/order/placeoco")


# --- shared fixtures ----------------------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeTradovate]:
    """Tradovate's demo environment on 127.0.0.1."""
    with running_fake_tradovate() as server:
        yield server


@pytest.fixture
def tradovate_settings(settings, fake):
    """Settings that point the product at the fake, with short timeouts and a cache of this test only."""
    settings.TRADOVATE_DEMO_URL = fake.base_url
    settings.TRADOVATE_LIVE_URL = "http://127.0.0.1:9/v1"  # nothing listens there
    settings.TRADOVATE_APP_ID = APP_ID
    settings.TRADOVATE_APP_VERSION = APP_VERSION
    settings.TRADOVATE_CID = str(CID)
    settings.TRADOVATE_SEC = SEC
    settings.TRADOVATE_TIMEOUT = (1.0, 1.0)
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"tradovate-{uuid.uuid4().hex}",
        }
    }
    return settings


@pytest.fixture
def account(owner, tradovate_settings) -> BrokerAccount:
    """The owner's demo Tradovate login, trading its account DEMO12345."""
    account = TradovateAccountFactory(owner=owner, name="Apex 50K", username=USERNAME, password=PASSWORD)
    broker_account_sync_subaccounts(
        account=account, subaccounts=[SubAccount(ACCOUNT_ID, DEMO_ACCOUNT_NAME, True)]
    )
    return account


@pytest.fixture
def recorder(owner):
    """An ES recorder: one take-profit 8 ticks away and a stop 8 ticks away."""
    return RecorderFactory(
        owner=owner,
        symbol="ES",
        tp_targets=[{"value": 8, "trim": None}],
        sl_enabled=True,
        sl_amount=Decimal(8),
    )


def trade_on(recorder, account, *, multiplier: int = 1):
    """A trader that follows `recorder` on DEMO12345 of `account`."""
    return TraderFactory(recorder=recorder, account=account, subaccounts=[(ACCOUNT_ID, multiplier)])


def send_alert(client, recorder, capture, task_queue: TaskQueue, **fields) -> dict:
    """Post a TradingView alert to the recorder's webhook and run every task it queues."""
    body = {"action": "buy", "ticker": "ES1!", "price": 5000, "id": uuid.uuid4().hex, **fields}
    with capture(execute=True):
        response = client.post(
            f"/webhook/{recorder.webhook_token}", data=json.dumps(body), content_type="application/json"
        )
    assert response.status_code == 200, response.content
    task_queue.run()
    return response.json()


def reconcile(account, **options) -> ReconcileReport:
    report = account_reconcile(account_id=account.pk, **options)
    assert report.ok, report.error
    return report


def order_changes(fake: FakeTradovate) -> list[tuple[str, object]]:
    """Every order-changing request the fake received, in order."""
    return [(request.path, request.body) for request in fake.requests if request.path in ORDER_CHANGES]


def orders(**filters) -> dict[str, Order]:
    return {order.plan_key: order for order in Order.objects.filter(**filters).order_by("pk")}


# --- orders through the pipeline ----------------------------------------------------------------------------


def test_an_alert_becomes_one_placeoso_with_take_profit_and_stop_exactly_as_tradovate_expects(
    client, task_queue, django_capture_on_commit_callbacks, fake, account, recorder
):
    trade_on(recorder, account)

    send_alert(client, recorder, django_capture_on_commit_callbacks, task_queue)

    placed = orders(broker_account=account)
    entry, take_profit, stop = placed["entry"], placed["tp1"], placed["sl1"]
    assert fake.bodies(OSO) == [
        {
            "accountSpec": DEMO_ACCOUNT_NAME,
            "accountId": DEMO_ACCOUNT_ID,
            "clOrdId": entry.client_id,
            "action": "Buy",
            "symbol": "ESZ6",
            "orderQty": 1,
            "orderType": "Market",
            "timeInForce": "Day",
            "isAutomated": True,
            "bracket1": {
                "action": "Sell",
                "orderType": "Limit",
                "price": 5002,
                "timeInForce": "GTC",
                "clOrdId": take_profit.client_id,
            },
            "bracket2": {
                "action": "Sell",
                "orderType": "Stop",
                "stopPrice": 4998,
                "timeInForce": "GTC",
                "clOrdId": stop.client_id,
            },
        }
    ]
    assert order_changes(fake) == [(OSO, fake.bodies(OSO)[0])]
    assert {order.status for order in placed.values()} == {"working"}
    assert all(order.broker_order_id for order in placed.values())
    assert fake.position(DEMO_ACCOUNT_ID, "ESZ6") == 1
    assert Decision.objects.get().status == Decision.Status.EXECUTED


def test_reconciliation_then_records_the_fill_and_the_position_of_the_bracket(
    client, task_queue, django_capture_on_commit_callbacks, fake, account, recorder
):
    trade_on(recorder, account)
    send_alert(client, recorder, django_capture_on_commit_callbacks, task_queue)

    report = reconcile(account)

    placed = orders(broker_account=account)
    assert (placed["entry"].status, placed["entry"].filled_quantity) == ("filled", 1)
    assert (placed["tp1"].status, placed["sl1"].status) == ("working", "working")
    position = Position.objects.get(broker_account=account, account_id=ACCOUNT_ID, symbol="ES")
    assert (position.quantity, position.avg_price) == (1, Decimal("5000"))
    assert {step.kind for step in report.steps} == {"order_status", "fills", "position"}
    assert order_changes(fake) == [(OSO, fake.bodies(OSO)[0])]  # protection was complete: nothing placed


def test_two_targets_with_a_trailing_stop_go_out_as_two_placeoso_brackets_one_per_target(
    client, task_queue, django_capture_on_commit_callbacks, fake, account, owner
):
    recorder = RecorderFactory(
        owner=owner,
        symbol="ES",
        initial_position_size=3,
        tp_targets=[{"value": 4, "trim": 1}, {"value": 8, "trim": None}],
        sl_enabled=True,
        sl_amount=Decimal(8),
        sl_type="trailing",
    )
    trade_on(recorder, account)

    send_alert(client, recorder, django_capture_on_commit_callbacks, task_queue)

    placed = orders(broker_account=account)

    def bracket(entry: str, quantity: int, take_profit: str, price: int, stop: str) -> dict:
        return {
            "accountSpec": DEMO_ACCOUNT_NAME,
            "accountId": DEMO_ACCOUNT_ID,
            "clOrdId": placed[entry].client_id,
            "action": "Buy",
            "symbol": "ESZ6",
            "orderQty": quantity,
            "orderType": "Market",
            "timeInForce": "Day",
            "isAutomated": True,
            "bracket1": {
                "action": "Sell",
                "orderType": "Limit",
                "price": price,
                "timeInForce": "GTC",
                "clOrdId": placed[take_profit].client_id,
            },
            "bracket2": {
                "action": "Sell",
                "orderType": "TrailingStop",
                "stopPrice": 4998,
                "pegDifference": 2,
                "timeInForce": "GTC",
                "clOrdId": placed[stop].client_id,
            },
        }

    # A bracket's exits take its entry's quantity, so each target rides on its own share of the entry:
    # every contract has its take-profit and its trailing stop on the book the moment it fills, and a
    # filled target leaves no stop larger than what is still held.
    assert fake.bodies(OSO) == [
        bracket("entry1", 1, "tp1", 5001, "sl1"),
        bracket("entry2", 2, "tp2", 5002, "sl2"),
    ]
    assert order_changes(fake) == [(OSO, body) for body in fake.bodies(OSO)]
    assert fake.position(DEMO_ACCOUNT_ID, "ESZ6") == 3
    assert {order.status for order in placed.values()} == {"working"}


def test_the_average_down_goes_out_after_the_bracket_as_one_automated_gtc_limit_on_the_tick_grid(
    client, task_queue, django_capture_on_commit_callbacks, fake, account, owner
):
    recorder = RecorderFactory(
        owner=owner,
        symbol="ES",
        tp_targets=[{"value": 8, "trim": None}],
        sl_enabled=True,
        sl_amount=Decimal(8),
        avg_down_enabled=True,
        avg_down_amount=2,
        avg_down_point=Decimal("2.6"),  # 4997.40 is off the 0.25 grid: rounded away from the entry
        avg_down_units="points",
    )
    trade_on(recorder, account)

    send_alert(client, recorder, django_capture_on_commit_callbacks, task_queue)

    placed = orders(broker_account=account)
    average_down = placed["avg1"]
    assert fake.bodies(PLACE) == [
        {
            "accountSpec": DEMO_ACCOUNT_NAME,
            "accountId": DEMO_ACCOUNT_ID,
            "clOrdId": average_down.client_id,
            "action": "Buy",
            "symbol": "ESZ6",
            "orderQty": 2,
            "orderType": "Limit",
            "price": 4997.25,
            "timeInForce": "GTC",
            "isAutomated": True,
        }
    ]
    assert [path for path, _ in order_changes(fake)] == [OSO, PLACE]
    assert fake.bodies(OSO)[0]["clOrdId"] == placed["entry"].client_id
    assert (average_down.role, average_down.status) == ("average_down", "working")
    working = fake.order(average_down.broker_order_id)
    assert (working["ordStatus"], working["price"]) == ("Working", Decimal("4997.25"))
    assert fake.position(DEMO_ACCOUNT_ID, "ESZ6") == 1  # only the entry filled


def test_the_protection_of_an_added_contract_replaces_the_old_as_automated_oco_pairs(
    client, task_queue, django_capture_on_commit_callbacks, fake, account, owner
):
    recorder = RecorderFactory(
        owner=owner,
        symbol="ES",
        tp_targets=[{"value": 4, "trim": 1}, {"value": 8, "trim": None}],
        sl_enabled=True,
        sl_amount=Decimal(8),
    )
    trade_on(recorder, account)
    send_alert(client, recorder, django_capture_on_commit_callbacks, task_queue)
    first = orders(broker_account=account)
    before = len(order_changes(fake))

    send_alert(client, recorder, django_capture_on_commit_callbacks, task_queue)  # a second buy adds one

    added = {
        key: order
        for key, order in orders(broker_account=account).items()
        if order.decision_id != first["entry"].decision_id
    }

    def body(key: str, action: str, quantity: int, **fields) -> dict:
        return {
            "accountSpec": DEMO_ACCOUNT_NAME,
            "accountId": DEMO_ACCOUNT_ID,
            "clOrdId": added[key].client_id,
            "action": action,
            "symbol": "ESZ6",
            "orderQty": quantity,
            **fields,
            "isAutomated": True,
        }

    # The old exits are cancelled first, then the add goes to market, then one OCO pair per target for
    # the whole position from the expected average.
    def pair(take_profit: str, price: int, stop: str) -> tuple[str, dict]:
        stop_leg = {
            "action": "Sell",
            "orderType": "Stop",
            "stopPrice": 4998,
            "timeInForce": "GTC",
            "clOrdId": added[stop].client_id,
        }
        limit = body(take_profit, "Sell", 1, orderType="Limit", price=price, timeInForce="GTC")
        return OCO, {**limit, "other": stop_leg}

    changes = order_changes(fake)[before:]
    assert {(path, change["orderId"]) for path, change in changes[:2]} == {
        (CANCEL, int(first["tp1"].broker_order_id)),
        (CANCEL, int(first["sl1"].broker_order_id)),
    }
    assert all(change == {"orderId": change["orderId"], "isAutomated": True} for _, change in changes[:2])
    assert changes[2:] == [
        (PLACE, body("entry", "Buy", 1, orderType="Market", timeInForce="Day")),
        pair("tp1", 5001, "sl1"),
        pair("tp2", 5002, "sl2"),
    ]
    assert fake.position(DEMO_ACCOUNT_ID, "ESZ6") == 2


def test_a_close_alert_liquidates_the_position_by_contract_id(
    client, task_queue, django_capture_on_commit_callbacks, fake, account, recorder
):
    trade_on(recorder, account)
    send_alert(client, recorder, django_capture_on_commit_callbacks, task_queue)
    reconcile(account)

    send_alert(client, recorder, django_capture_on_commit_callbacks, task_queue, action="close", price=5001)

    assert fake.bodies(LIQUIDATE) == [
        {"accountId": DEMO_ACCOUNT_ID, "contractId": fake.contract_id("ESZ6"), "admin": False}
    ]
    assert fake.position(DEMO_ACCOUNT_ID, "ESZ6") == 0
    exit_order = Order.objects.get(role="exit")
    assert exit_order.via_liquidation
    assert exit_order.status == "working"
    assert exit_order.broker_order_id
    # Tradovate cancelled the position's orders with the liquidation; ours say so at once.
    assert set(
        Order.objects.filter(role__in=["take_profit", "stop_loss"]).values_list("status", flat=True)
    ) == {"cancelled"}
    reconcile(account)
    exit_order.refresh_from_db()
    assert exit_order.status == "filled"
    assert Position.objects.get(broker_account=account, symbol="ES").quantity == 0


def test_tradovates_refusal_reaches_the_order_log_verbatim(
    client, task_queue, django_capture_on_commit_callbacks, fake, account, recorder
):
    trade_on(recorder, account)
    fake.refuse_next(OSO, reason="MaxPosLimitReached", text="Max position limit of 0 contracts reached.")

    send_alert(client, recorder, django_capture_on_commit_callbacks, task_queue)

    entry = Order.objects.get(plan_key="entry")
    assert (entry.status, entry.error) == ("rejected", "Max position limit of 0 contracts reached.")
    assert Decision.objects.get().status == Decision.Status.FAILED
    client.force_login(account.owner)
    assert "Max position limit of 0 contracts reached." in client.get("/orders/").content.decode()


def test_the_contract_is_resolved_once_for_many_signals(
    client, task_queue, django_capture_on_commit_callbacks, fake, account, recorder
):
    trade_on(recorder, account)
    for action in ("buy", "close", "buy"):
        send_alert(client, recorder, django_capture_on_commit_callbacks, task_queue, action=action)

    assert len(fake.requests_to("/contract/suggest")) == 1
    assert len(fake.bodies(OSO)) == 2


# --- authentication -----------------------------------------------------------------------------------------


def test_many_orders_on_one_account_cost_one_authentication_across_workers(
    client, task_queue, django_capture_on_commit_callbacks, fake, account, owner
):
    # Three recorders trading the same login: every decision builds its own broker and client, as separate
    # workers would, and finds the token the first one stored on the account row.
    recorders = [RecorderFactory(owner=owner, symbol="ES") for _ in range(3)]
    for recorder in recorders:
        trade_on(recorder, account)
    for recorder in recorders:
        send_alert(client, recorder, django_capture_on_commit_callbacks, task_queue)
    reconcile(account)

    assert len(fake.requests_to(LOGIN)) == 1
    assert fake.requests_to(RENEW) == []
    assert Order.objects.filter(role="entry", status="filled").count() == 3
    stored = BrokerAccount.objects.get(pk=account.pk)
    assert stored.access_token_source == "password"
    assert stored.access_token_expires_at > timezone.now() + timedelta(minutes=70)


@pytest.mark.django_db(transaction=True)
def test_workers_on_their_own_database_connections_log_in_once_between_them(fake, account):
    # A slow login: the other workers must wait for its token rather than start logins of their own.
    fake.slow_next(LOGIN, seconds=0.5)
    workers = 8
    start = threading.Barrier(workers)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            start.wait()
            broker = registry.broker_for_account(BrokerAccount.objects.get(pk=account.pk))
            broker.list_orders(ACCOUNT_ID)
        except BaseException as error:  # reported by the assertion below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(fake.requests_to(LOGIN)) == 1
    assert fake.requests_to(RENEW) == []
    assert len(fake.requests_to("/order/list")) == workers
    stored = BrokerAccount.objects.get(pk=account.pk)
    assert stored.access_token_expires_at > timezone.now()
    assert stored.token_renewal_until is None  # the lease was given back


def test_a_renewal_lease_lapses_when_its_worker_died_and_is_never_freed_by_another(account, monkeypatch):
    store = registry.AccountTokenStore(account.pk)
    dead_workers_lease = timezone.now() - timedelta(seconds=1)
    BrokerAccount.objects.filter(pk=account.pk).update(token_renewal_until=dead_workers_lease)

    with store.renewal_lock():
        held = BrokerAccount.objects.get(pk=account.pk).token_renewal_until
        assert held > timezone.now()
        # A worker that gives up waiting goes on without the lease and leaves the holder's alone.
        monkeypatch.setattr(registry, "RENEWAL_LOCK_WAIT_SECONDS", 0)
        with registry.AccountTokenStore(account.pk).renewal_lock():
            pass
        assert BrokerAccount.objects.get(pk=account.pk).token_renewal_until == held

    assert BrokerAccount.objects.get(pk=account.pk).token_renewal_until is None


def test_a_token_close_to_expiry_is_renewed_before_the_order_not_replaced_by_a_login(
    client, task_queue, django_capture_on_commit_callbacks, fake, account, recorder
):
    token, expires_at = fake.issue_token(lifetime=timedelta(minutes=5))
    BrokerAccount.objects.filter(pk=account.pk).update(
        access_token=token, access_token_expires_at=expires_at, access_token_source="password"
    )
    trade_on(recorder, account)

    send_alert(client, recorder, django_capture_on_commit_callbacks, task_queue)

    [renewal] = fake.requests_to(RENEW)
    assert renewal.headers["Authorization"] == f"Bearer {token}"
    assert fake.requests_to(LOGIN) == []
    stored = BrokerAccount.objects.get(pk=account.pk)
    assert stored.access_token != token
    assert stored.access_token_expires_at > expires_at + timedelta(minutes=60)
    assert fake.requests_to(OSO)[0].headers["Authorization"] == f"Bearer {stored.access_token}"


def test_a_penalty_on_the_bracket_is_waited_out_and_the_order_placed_once(
    client, task_queue, django_capture_on_commit_callbacks, fake, account, recorder
):
    trade_on(recorder, account)
    fake.penalize_next(OSO, p_time=0.05)

    send_alert(client, recorder, django_capture_on_commit_callbacks, task_queue)

    first, second = fake.bodies(OSO)
    assert "p-ticket" not in first
    assert second.pop("p-ticket") in fake.tickets
    assert second == first
    assert len(fake.orders_with_client_id(first["clOrdId"])) == 1
    assert Order.objects.get(plan_key="entry").status == "working"


def test_a_captcha_marks_the_account_and_no_login_is_tried_again_within_the_hour(
    client, task_queue, django_capture_on_commit_callbacks, fake, account, recorder
):
    trade_on(recorder, account)
    fake.penalize_next(LOGIN, captcha=True)

    send_alert(client, recorder, django_capture_on_commit_callbacks, task_queue)

    stored = BrokerAccount.objects.get(pk=account.pk)
    assert (stored.status, stored.status_reason) == ("needs_attention", "captcha")
    assert "OAuth" in stored.status_message
    assert stored.retry_not_before > timezone.now() + timedelta(minutes=59)
    decision = Decision.objects.get()
    assert decision.status == Decision.Status.FAILED
    assert "captcha" in decision.reason
    assert "OAuth" in decision.reason
    requests_after_captcha = len(fake.requests)

    send_alert(client, recorder, django_capture_on_commit_callbacks, task_queue, action="sell")
    assert accounts_to_reconcile() == []
    assert len(fake.requests) == requests_after_captcha  # nothing was even tried

    client.force_login(account.owner)
    page = client.get("/broker-accounts/").content.decode()
    assert "Needs attention" in page
    assert "captcha" in page
    assert f"/connect-tradovate?account={account.pk}" in page


def test_reconciliation_logs_in_again_once_the_captcha_pause_is_over(
    client, task_queue, django_capture_on_commit_callbacks, fake, account, recorder
):
    trade_on(recorder, account)
    fake.penalize_next(LOGIN, captcha=True)
    send_alert(client, recorder, django_capture_on_commit_callbacks, task_queue)
    later = datetime.now(UTC) + timedelta(minutes=61)
    BrokerAccount.objects.filter(pk=account.pk).update(retry_not_before=later - timedelta(minutes=1))

    with time_machine.travel(later, tick=False):
        assert accounts_to_reconcile() == [account.pk]
        report = reconcile(account)

    assert next(step.kind for step in report.steps) == "reconnect"
    assert BrokerAccount.objects.get(pk=account.pk).status == "active"
    assert ReconcileAction.objects.filter(kind="reconnect", broker_account=account).exists()


def test_a_lock_out_rests_the_login_for_the_hour_then_reconciliation_resumes_it(
    client, task_queue, django_capture_on_commit_callbacks, fake, account, recorder
):
    trade_on(recorder, account)
    fake.fail_next(OSO, status=429)

    send_alert(client, recorder, django_capture_on_commit_callbacks, task_queue)

    stored = BrokerAccount.objects.get(pk=account.pk)
    assert (stored.status, stored.status_reason) == ("needs_attention", "locked_out")
    assert stored.retry_not_before > timezone.now() + timedelta(minutes=59)
    placed = orders(broker_account=account)
    assert {order.status for order in placed.values()} == {"failed"}
    assert "locked this login out for an hour" in placed["entry"].error
    assert fake.position(DEMO_ACCOUNT_ID, "ESZ6") == 0
    requests_after_lock_out = len(fake.requests)
    # Every further request would extend the lock-out: nothing goes to Tradovate until the hour is over.
    send_alert(client, recorder, django_capture_on_commit_callbacks, task_queue, action="sell")
    assert accounts_to_reconcile() == []
    assert len(fake.requests) == requests_after_lock_out

    with time_machine.travel(stored.retry_not_before + timedelta(seconds=1), tick=False):
        assert accounts_to_reconcile() == [account.pk]
        report = reconcile(account)

    assert next(step.kind for step in report.steps) == "reconnect"
    assert BrokerAccount.objects.get(pk=account.pk).status == "active"


# --- unknown outcomes ---------------------------------------------------------------------------------------


@pytest.fixture
def bracket_timing_out(
    client, task_queue, django_capture_on_commit_callbacks, fake, account, recorder, settings
):
    """Send an alert whose placeoso is answered after the timeout; return its orders by plan key."""

    def send() -> dict[str, Order]:
        settings.TRADOVATE_TIMEOUT = (1.0, 0.3)
        trade_on(recorder, account)
        fake.slow_next(OSO, seconds=1.0)
        send_alert(client, recorder, django_capture_on_commit_callbacks, task_queue)
        return orders(broker_account=account)

    return send


def test_bracket_exits_held_without_our_client_ids_are_adopted_through_their_entry(
    fake, account, bracket_timing_out
):
    fake.keeps_bracket_client_ids = False
    placed = bracket_timing_out()
    assert {order.status for order in placed.values()} == {"unknown"}

    report = reconcile(account, now=timezone.now() + timedelta(seconds=45))

    placed = orders(broker_account=account)
    [entry_at_broker] = fake.orders_with_client_id(placed["entry"].client_id)
    children = {
        fake.order(order_id)["orderType"]: str(order_id)
        for order_id, row in fake.orders.items()
        if row["parentId"] == entry_at_broker["id"]
    }
    assert (placed["tp1"].status, placed["tp1"].broker_order_id) == ("working", children["Limit"])
    assert (placed["sl1"].status, placed["sl1"].broker_order_id) == ("working", children["Stop"])
    # Adopted, so the position counts as protected: nothing is placed again, nothing stacked.
    assert "place_protection" not in {step.kind for step in report.steps}
    assert fake.bodies(OCO) == fake.bodies(PLACE) == []
    assert len(fake.bodies(OSO)) == 1


def test_a_bracket_exit_is_not_judged_before_its_entry_is_settled(fake, bracket_timing_out):
    fake.keeps_bracket_client_ids = False
    placed = bracket_timing_out()

    # The sweeper's tasks may run in any order: the stop's comes first here.
    stop = order_settle(order_id=placed["sl1"].pk)

    assert stop.status == "unknown"  # not "never placed": that depends on the entry
    order_settle(order_id=placed["entry"].pk)
    assert order_settle(order_id=placed["sl1"].pk).status == "working"


def test_a_bracket_that_timed_out_is_never_resent_and_reconciliation_adopts_the_one_at_the_broker(
    fake, account, bracket_timing_out
):
    placed = bracket_timing_out()

    assert {order.status for order in placed.values()} == {"unknown"}
    assert "Do not send it again" in placed["entry"].error
    assert Decision.objects.get().status == Decision.Status.UNSETTLED

    # Too young to settle: the broker may not list it yet.
    assert [step for step in reconcile(account).steps if step.kind == "settle"] == []
    report = reconcile(account, now=timezone.now() + timedelta(seconds=45))

    assert [step.kind for step in report.steps].count("settle") == 3
    assert len(fake.bodies(OSO)) == 1
    assert len(fake.orders_with_client_id(placed["entry"].client_id)) == 1
    placed = orders(broker_account=account)
    assert (placed["entry"].status, placed["tp1"].status, placed["sl1"].status) == (
        "filled",
        "working",
        "working",
    )
    assert placed["entry"].broker_order_id == str(
        fake.orders_with_client_id(placed["entry"].client_id)[0]["id"]
    )
    assert Decision.objects.get().status == Decision.Status.EXECUTED
    assert Position.objects.get(broker_account=account, symbol="ES").quantity == 1
