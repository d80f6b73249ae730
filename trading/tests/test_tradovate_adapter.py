"""The Tradovate adapter over real HTTP against the fake Tradovate server."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from types import SimpleNamespace

import pytest
import requests
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError

from trading.brokers import tradovate
from trading.brokers.base import (
    BracketLeg,
    BracketRequest,
    BrokerError,
    BrokerNeedsAttention,
    BrokerUnavailable,
    OrderOutcomeUnknown,
    OrderRejected,
    OrderRequest,
    OrderStatus,
)
from trading.brokers.tradovate import (
    MemoryTokenStore,
    TradovateBroker,
    TradovateClient,
    TradovateCredentials,
    TradovateToken,
    authorize_url,
    exchange_oauth_code,
    new_session,
    parse_symbol,
)
from trading.tests.fake_tradovate import (
    APP_ID,
    APP_VERSION,
    BAD_LOGIN_TEXT,
    CID,
    DEMO_ACCOUNT_ID,
    DEMO_ACCOUNT_NAME,
    OAUTH_CLIENT_ID,
    OAUTH_CLIENT_SECRET,
    OTHER_ACCOUNT_ID,
    OTHER_ACCOUNT_NAME,
    PASSWORD,
    SEC,
    USERNAME,
    FakeTradovate,
    running_fake_tradovate,
)

ACCOUNT = str(DEMO_ACCOUNT_ID)
LOGIN = "/auth/accesstokenrequest"
RENEW = "/auth/renewaccesstoken"
PLACE = "/order/placeorder"
OSO = "/order/placeoso"
FAST = (1.0, 2.0)


def credentials(name: str = USERNAME, password: str = PASSWORD) -> TradovateCredentials:
    return TradovateCredentials(
        name=name,
        password=password,
        app_id=APP_ID,
        app_version=APP_VERSION,
        cid=str(CID),
        sec=SEC,
        device_id="5b6f0c1e-device",
    )


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def fake() -> Iterator[FakeTradovate]:
    with running_fake_tradovate() as server:
        yield server


@pytest.fixture
def session() -> Iterator[requests.Session]:
    http = new_session()
    yield http
    http.close()


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_client(
    fake: FakeTradovate,
    session: requests.Session,
    *,
    store: MemoryTokenStore | None = None,
    creds: TradovateCredentials | None = None,
    no_credentials: bool = False,
    timeout: tuple[float, float] = FAST,
    sleeps: list[float] | None = None,
    clock: Clock | None = None,
) -> TradovateClient:
    return TradovateClient(
        fake.base_url,
        credentials=None if no_credentials else (creds or credentials()),
        token_store=store if store is not None else MemoryTokenStore(),
        timeout=timeout,
        session=session,
        sleep=(sleeps.append if sleeps is not None else lambda seconds: None),
        clock=clock or Clock(),
    )


def market_buy(client_id: str, quantity: int = 1, symbol: str = "ES1!") -> OrderRequest:
    return OrderRequest(
        client_id=client_id,
        account_id=ACCOUNT,
        account_spec=DEMO_ACCOUNT_NAME,
        symbol=symbol,
        action="Buy",
        order_type="Market",
        quantity=quantity,
    )


def limit_sell(client_id: str, price: str, quantity: int = 1) -> OrderRequest:
    return OrderRequest(
        client_id=client_id,
        account_id=ACCOUNT,
        account_spec=DEMO_ACCOUNT_NAME,
        symbol="ESZ6",
        action="Sell",
        order_type="Limit",
        quantity=quantity,
        price=Decimal(price),
        time_in_force="GTC",
    )


# --- the HTTP session --------------------------------------------------------------------------------------


@pytest.fixture
def fresh_shared_session() -> Iterator[list[requests.Session]]:
    """No process-wide session yet; every session shared_session() made in the test is closed after it."""
    tradovate.shared_session_forget()
    made: list[requests.Session] = []
    yield made
    for http in made:
        http.close()
    tradovate.shared_session_forget()


def test_the_shared_session_is_one_per_process_and_a_new_one_after_a_fork(fresh_shared_session, monkeypatch):
    parent = tradovate.shared_session()
    fresh_shared_session.append(parent)
    assert tradovate.shared_session() is parent

    monkeypatch.setattr(tradovate, "os", SimpleNamespace(getpid=lambda: os.getpid() + 1))
    child = tradovate.shared_session()
    fresh_shared_session.append(child)

    # The forked worker never writes on the parent's sockets, and keeps its own session from then on.
    assert child is not parent
    assert tradovate.shared_session() is child


def test_the_shared_session_never_keeps_a_cookie_the_server_sets(fake, fresh_shared_session):
    http = tradovate.shared_session()
    fresh_shared_session.append(http)
    broker = TradovateBroker(make_client(fake, http))
    fake.set_cookie_next("/account/list", cookie="AWSALB=sticky-1; Path=/")

    broker.list_accounts()
    broker.list_accounts()

    assert list(http.cookies) == []
    assert [request.headers.get("Cookie") for request in fake.requests_to("/account/list")] == [None, None]


def test_the_shared_session_leaves_every_retry_to_the_adapter(fresh_shared_session):
    http = tradovate.shared_session()
    fresh_shared_session.append(http)

    # urllib3 must never resend a request on its own: a resent order could be placed twice.
    for url in ("https://live.tradovateapi.com/v1", "http://127.0.0.1/v1"):
        retries = http.get_adapter(url).max_retries
        assert retries.total == 0
        with pytest.raises(MaxRetryError):  # the first failure ends the request
            retries.increment(method="POST", url="/v1/order/placeorder", error=ConnectTimeoutError())


# --- authentication ----------------------------------------------------------------------------------------


def test_many_orders_cost_one_authentication(fake, session):
    broker = TradovateBroker(make_client(fake, session))

    for number in range(5):
        broker.place_order(limit_sell(f"jt-many-{number}", "5100"))
    broker.list_orders(ACCOUNT)

    assert len(fake.requests_to(LOGIN)) == 1
    assert fake.requests_to(RENEW) == []
    assert len(fake.requests_to(PLACE)) == 5


def test_workers_sharing_a_token_store_log_in_once_between_them(fake, session):
    store = MemoryTokenStore()
    brokers = [TradovateBroker(make_client(fake, session, store=store)) for _ in range(8)]
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def place(number: int) -> None:
        start.wait()
        try:
            brokers[number].place_order(limit_sell(f"jt-worker-{number}", "5100"))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=place, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    # The workers that waited for the lock found the new token; none renewed it or logged in again.
    assert len(fake.requests_to(LOGIN)) == 1
    assert fake.requests_to(RENEW) == []
    assert len(fake.requests_to(PLACE)) == 8


def test_a_valid_cached_token_is_used_without_any_authentication_call(fake, session):
    token, expires_at = fake.issue_token()
    store = MemoryTokenStore(TradovateToken(access_token=token, expires_at=expires_at))

    TradovateBroker(make_client(fake, session, store=store)).list_accounts()

    assert fake.requests_to(LOGIN) == []
    assert fake.requests_to(RENEW) == []
    assert fake.requests_to("/account/list")[0].headers["Authorization"] == f"Bearer {token}"


def test_a_stored_oauth_token_is_used_instead_of_a_password_login(fake, session):
    token, expires_at = fake.issue_token()
    store = MemoryTokenStore(TradovateToken(access_token=token, expires_at=expires_at, source="oauth"))
    client = make_client(fake, session, store=store, no_credentials=True)

    assert client.me().full_name == "Test Trader"
    assert fake.requests_to(LOGIN) == []


def test_the_token_is_renewed_once_when_less_than_ten_minutes_remain(fake, session):
    clock = Clock()
    store = MemoryTokenStore()
    broker = TradovateBroker(make_client(fake, session, store=store, clock=clock))
    broker.list_accounts()
    first = store.get()

    clock.now = first.expires_at - timedelta(minutes=11)
    broker.list_accounts()
    assert fake.requests_to(RENEW) == []

    clock.now = first.expires_at - timedelta(minutes=9)
    # Renewed at the clock's time, a token lives another 80 minutes from then.
    fake.token_lifetime = (clock.now - datetime.now(UTC)) + timedelta(minutes=80)
    broker.list_accounts()
    broker.list_accounts()

    renewals = fake.requests_to(RENEW)
    assert len(renewals) == 1
    assert renewals[0].headers["Authorization"] == f"Bearer {first.access_token}"
    assert renewals[0].body is None
    assert store.get().access_token != first.access_token
    assert (
        fake.requests_to("/account/list")[-1].headers["Authorization"] == f"Bearer {store.get().access_token}"
    )
    assert len(fake.requests_to(LOGIN)) == 1


def test_an_expired_session_is_replaced_and_the_read_retried(fake, session):
    store = MemoryTokenStore()
    broker = TradovateBroker(make_client(fake, session, store=store))
    broker.list_accounts()
    fake.expire_tokens()

    accounts = broker.list_accounts()

    assert [account.name for account in accounts] == [DEMO_ACCOUNT_NAME, OTHER_ACCOUNT_NAME]
    assert len(fake.requests_to("/account/list")) == 3  # before, refused with 401, retried
    assert len(fake.requests_to(LOGIN)) == 2  # the dead token could not be renewed, so a new login


def test_an_order_refused_with_401_is_not_resent_but_the_next_one_goes_through(fake, session):
    broker = TradovateBroker(make_client(fake, session))
    broker.place_order(limit_sell("jt-401-a", "5100"))
    fake.expire_tokens()

    with pytest.raises(BrokerUnavailable, match="safe to send the request again"):
        broker.place_order(limit_sell("jt-401-b", "5100"))
    assert len(fake.requests_to(PLACE)) == 2
    assert fake.orders_with_client_id("jt-401-b") == []

    broker.place_order(limit_sell("jt-401-b", "5100"))
    assert len(fake.orders_with_client_id("jt-401-b")) == 1


def test_an_expired_oauth_connection_without_a_password_asks_the_user_to_reconnect(fake, session):
    token, _ = fake.issue_token()
    expired = datetime.now(UTC) - timedelta(minutes=1)
    store = MemoryTokenStore(TradovateToken(access_token=token, expires_at=expired, source="oauth"))
    broker = TradovateBroker(make_client(fake, session, store=store, no_credentials=True))

    with pytest.raises(BrokerNeedsAttention, match="through OAuth") as caught:
        broker.list_accounts()

    assert caught.value.reason == "oauth_expired"
    assert fake.requests == []


def test_a_login_penalty_is_waited_out_and_the_identical_body_resent_with_the_ticket(fake, session, sleeps):
    fake.penalize_next(LOGIN, p_time=7)
    broker = TradovateBroker(make_client(fake, session, sleeps=sleeps))

    broker.list_accounts()

    assert sleeps == [7]
    first, second = fake.bodies(LOGIN)
    assert "p-ticket" not in first
    ticket = second.pop("p-ticket")
    assert ticket in fake.tickets
    assert second == first


def test_an_order_penalty_is_waited_out_and_the_order_placed_once(fake, session, sleeps):
    broker = TradovateBroker(make_client(fake, session, sleeps=sleeps))
    broker.list_accounts()
    fake.penalize_next(PLACE, p_time=2)

    broker.place_order(limit_sell("jt-penalty", "5100"))

    assert sleeps == [2]
    first, second = fake.bodies(PLACE)
    assert second == {**first, "p-ticket": second["p-ticket"]}
    assert len(fake.orders_with_client_id("jt-penalty")) == 1


def test_a_captcha_stops_the_login_and_tells_the_user_to_connect_through_oauth(fake, session, sleeps):
    fake.users["captcha-victim"] = PASSWORD
    fake.penalize_next(LOGIN, p_time=30, captcha=True)
    broker = TradovateBroker(make_client(fake, session, creds=credentials("captcha-victim"), sleeps=sleeps))

    with pytest.raises(BrokerNeedsAttention, match="OAuth") as caught:
        broker.list_accounts()
    assert caught.value.reason == "captcha"
    assert sleeps == []

    with pytest.raises(BrokerNeedsAttention, match="captcha"):
        broker.list_accounts()
    assert len(fake.requests_to(LOGIN)) == 1


def test_a_wrong_password_is_reported_verbatim_and_logins_stop_before_a_lockout(fake, session):
    broker = TradovateBroker(make_client(fake, session, creds=credentials("forgetful", "wrong")))

    for _ in range(3):
        with pytest.raises(BrokerNeedsAttention) as caught:
            broker.list_accounts()
        assert BAD_LOGIN_TEXT in str(caught.value)
        assert caught.value.reason == "credentials"
    with pytest.raises(BrokerNeedsAttention, match="stopped trying"):
        broker.list_accounts()

    assert len(fake.requests_to(LOGIN)) == 3
    assert fake.requests_to("/account/list") == []


# --- OAuth -------------------------------------------------------------------------------------------------


def test_the_authorize_url_carries_client_redirect_and_state():
    url = authorize_url(
        "https://trader.tradovate.com/oauth", "8", "https://jt.example/oauth/callback", "st4te"
    )

    assert url == (
        "https://trader.tradovate.com/oauth?response_type=code&client_id=8"
        "&redirect_uri=https%3A%2F%2Fjt.example%2Foauth%2Fcallback&state=st4te"
    )


def test_an_oauth_code_is_tried_on_live_first_then_on_demo(session):
    with running_fake_tradovate() as live, running_fake_tradovate() as demo:
        code = demo.issue_oauth_code()

        environment, token = exchange_oauth_code(
            live.base_url,
            demo.base_url,
            code,
            "https://jt.example/cb",
            OAUTH_CLIENT_ID,
            OAUTH_CLIENT_SECRET,
            session=session,
            timeout=FAST,
        )

        assert environment == "demo"
        assert token.source == "oauth"
        assert live.bodies("/auth/oauthtoken") == [
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": "https://jt.example/cb",
                "client_id": OAUTH_CLIENT_ID,
                "client_secret": OAUTH_CLIENT_SECRET,
            }
        ]
        assert len(demo.requests_to("/auth/oauthtoken")) == 1
        client = make_client(demo, session, store=MemoryTokenStore(token), no_credentials=True)
        assert client.me().user_id == 1


def test_an_oauth_code_from_live_is_never_sent_to_demo(session):
    with running_fake_tradovate() as live, running_fake_tradovate() as demo:
        code = live.issue_oauth_code()

        environment, token = exchange_oauth_code(
            live.base_url,
            demo.base_url,
            code,
            "https://jt.example/cb",
            OAUTH_CLIENT_ID,
            OAUTH_CLIENT_SECRET,
            session=session,
            timeout=FAST,
        )

        assert environment == "live"
        assert token.expires_at > datetime.now(UTC) + timedelta(minutes=70)
        assert demo.requests == []


def test_an_oauth_code_neither_environment_accepts_is_reported_in_words(session):
    with (
        running_fake_tradovate() as live,
        running_fake_tradovate() as demo,
        pytest.raises(BrokerNeedsAttention, match="The code is invalid or expired"),
    ):
        exchange_oauth_code(
            live.base_url,
            demo.base_url,
            "stale",
            "https://jt.example/cb",
            OAUTH_CLIENT_ID,
            OAUTH_CLIENT_SECRET,
            session=session,
            timeout=FAST,
        )


# --- order bodies ------------------------------------------------------------------------------------------


def test_a_bracket_entry_is_one_placeoso_request_with_take_profit_then_stop(fake, session):
    broker = TradovateBroker(make_client(fake, session))
    bracket = BracketRequest(
        entry=market_buy("jt-entry-1", quantity=2, symbol="CME_MINI:ES1!"),
        take_profit=BracketLeg(client_id="jt-tp-1", order_type="Limit", price=Decimal("5010.25")),
        stop_loss=BracketLeg(client_id="jt-sl-1", order_type="Stop", stop_price=Decimal("4990.50")),
    )

    placed = broker.place_bracket(bracket)

    assert fake.bodies(OSO) == [
        {
            "accountSpec": DEMO_ACCOUNT_NAME,
            "accountId": DEMO_ACCOUNT_ID,
            "clOrdId": "jt-entry-1",
            "action": "Buy",
            "symbol": "ESZ6",
            "orderQty": 2,
            "orderType": "Market",
            "timeInForce": "Day",
            "isAutomated": True,
            "bracket1": {
                "action": "Sell",
                "orderType": "Limit",
                "price": 5010.25,
                "timeInForce": "GTC",
                "clOrdId": "jt-tp-1",
            },
            "bracket2": {
                "action": "Sell",
                "orderType": "Stop",
                "stopPrice": 4990.5,
                "timeInForce": "GTC",
                "clOrdId": "jt-sl-1",
            },
        }
    ]
    assert fake.requests_to(PLACE) == []
    take_profit, stop_loss = fake.order(placed.take_profit_id), fake.order(placed.stop_loss_id)
    assert (take_profit["clOrdId"], take_profit["price"]) == ("jt-tp-1", Decimal("5010.25"))
    assert (stop_loss["clOrdId"], stop_loss["stopPrice"]) == ("jt-sl-1", Decimal("4990.5"))
    assert fake.position(DEMO_ACCOUNT_ID, "ESZ6") == 2
    # Protection went to market the moment the entry filled.
    assert take_profit["ordStatus"] == stop_loss["ordStatus"] == "Working"


def test_a_bracket_with_only_a_stop_sends_it_as_bracket1(fake, session):
    broker = TradovateBroker(make_client(fake, session))
    placed = broker.place_bracket(
        BracketRequest(
            entry=market_buy("jt-entry-2"),
            stop_loss=BracketLeg(client_id="jt-sl-2", order_type="Stop", stop_price=Decimal("4990")),
        )
    )

    (body,) = fake.bodies(OSO)
    assert body["bracket1"]["clOrdId"] == "jt-sl-2"
    assert "bracket2" not in body
    assert placed.take_profit_id is None
    assert fake.order(placed.stop_loss_id)["clOrdId"] == "jt-sl-2"


def test_a_lone_take_profit_for_a_position_without_a_stop_is_one_gtc_limit_placeorder(fake, session):
    broker = TradovateBroker(make_client(fake, session))

    placed = broker.place_order(limit_sell("jt-tp2-1", "5020.75"))

    assert fake.bodies(PLACE) == [
        {
            "accountSpec": DEMO_ACCOUNT_NAME,
            "accountId": DEMO_ACCOUNT_ID,
            "clOrdId": "jt-tp2-1",
            "action": "Sell",
            "symbol": "ESZ6",
            "orderQty": 1,
            "orderType": "Limit",
            "price": 5020.75,
            "timeInForce": "GTC",
            "isAutomated": True,
        }
    ]
    assert fake.order(placed.broker_order_id)["ordStatus"] == "Working"


def test_a_trailing_stop_sends_its_distance_as_peg_difference(fake, session):
    broker = TradovateBroker(make_client(fake, session))
    trailing = OrderRequest(
        client_id="jt-trail-1",
        account_id=ACCOUNT,
        account_spec=DEMO_ACCOUNT_NAME,
        symbol="ESZ6",
        action="Sell",
        order_type="TrailingStop",
        quantity=1,
        stop_price=Decimal("4980"),
        trail_distance=Decimal("20"),
        time_in_force="GTC",
    )

    broker.place_order(trailing)

    assert fake.bodies(PLACE) == [
        {
            "accountSpec": DEMO_ACCOUNT_NAME,
            "accountId": DEMO_ACCOUNT_ID,
            "clOrdId": "jt-trail-1",
            "action": "Sell",
            "symbol": "ESZ6",
            "orderQty": 1,
            "orderType": "TrailingStop",
            "stopPrice": 4980,
            "pegDifference": 20,
            "timeInForce": "GTC",
            "isAutomated": True,
        }
    ]


def test_liquidation_names_the_contract_id_and_closes_the_position(fake, session):
    broker = TradovateBroker(make_client(fake, session))
    broker.place_order(market_buy("jt-liq-entry", quantity=3, symbol="ESZ6"))
    working = broker.place_order(limit_sell("jt-liq-tp", "5100", quantity=3))

    placed = broker.liquidate_position(ACCOUNT, "ESZ6")

    assert fake.bodies("/order/liquidateposition") == [
        {"accountId": DEMO_ACCOUNT_ID, "contractId": fake.contract_id("ESZ6"), "admin": False}
    ]
    assert placed is not None
    assert fake.position(DEMO_ACCOUNT_ID, "ESZ6") == 0
    assert fake.order(working.broker_order_id)["ordStatus"] == "Canceled"


def test_liquidating_a_continuous_symbol_closes_the_contract_actually_held(fake, session):
    broker = TradovateBroker(make_client(fake, session))
    broker.place_order(market_buy("jt-roll-entry", quantity=1, symbol="ESH7"))  # not the front month

    broker.liquidate_position(ACCOUNT, "ES1!")

    (body,) = fake.bodies("/order/liquidateposition")
    assert body["contractId"] == fake.contract_id("ESH7")
    assert fake.position(DEMO_ACCOUNT_ID, "ESH7") == 0


def test_modify_and_cancel_send_automated_commands_that_take_effect(fake, session):
    broker = TradovateBroker(make_client(fake, session))
    placed = broker.place_order(limit_sell("jt-mod-1", "5100"))

    broker.modify_order(
        placed.broker_order_id, quantity=2, price=Decimal("5105.5"), stop_price=None, order_type="Limit"
    )
    (order,) = [row for row in broker.list_orders(ACCOUNT) if row.broker_order_id == placed.broker_order_id]
    assert (order.quantity, order.price, order.client_id) == (2, Decimal("5105.5"), "jt-mod-1")

    broker.cancel_order(placed.broker_order_id)

    assert fake.bodies("/order/modifyorder") == [
        {
            "orderId": int(placed.broker_order_id),
            "orderQty": 2,
            "orderType": "Limit",
            "price": 5105.5,
            "timeInForce": "GTC",
            "isAutomated": True,
        }
    ]
    assert fake.bodies("/order/cancelorder") == [
        {"orderId": int(placed.broker_order_id), "isAutomated": True}
    ]
    assert broker.find_order_by_client_id(ACCOUNT, "jt-mod-1").status == OrderStatus.CANCELLED


# --- unknown outcomes and failures -------------------------------------------------------------------------


def test_a_timeout_on_placeorder_is_an_unknown_outcome_settled_by_client_id_without_a_duplicate(
    fake, session
):
    broker = TradovateBroker(make_client(fake, session, timeout=(1.0, 0.2)))
    broker.list_accounts()
    fake.slow_next(PLACE)  # carried out, then no answer until the fake stops

    with pytest.raises(OrderOutcomeUnknown, match="Do not send it again"):
        broker.place_order(limit_sell("jt-timeout-1", "5100"))

    assert len(fake.requests_to(PLACE)) == 1
    found = broker.find_order_by_client_id(ACCOUNT, "jt-timeout-1")
    assert found is not None
    assert found.status == OrderStatus.WORKING
    (placed,) = fake.orders_with_client_id("jt-timeout-1")
    assert found.broker_order_id == str(placed["id"])
    assert len(fake.requests_to(PLACE)) == 1


def test_a_connection_dropped_after_sending_an_order_is_an_unknown_outcome(fake, session):
    broker = TradovateBroker(make_client(fake, session))
    broker.list_accounts()
    fake.drop_next(PLACE)

    with pytest.raises(OrderOutcomeUnknown, match="connection lost"):
        broker.place_order(limit_sell("jt-drop-1", "5100"))

    assert len(fake.requests_to(PLACE)) == 1
    assert broker.find_order_by_client_id(ACCOUNT, "jt-drop-1") is not None


def test_an_order_that_never_reached_the_broker_is_not_found_by_client_id(fake, session):
    broker = TradovateBroker(make_client(fake, session))
    broker.list_accounts()
    fake.drop_next(PLACE, process=False)

    with pytest.raises(OrderOutcomeUnknown):
        broker.place_order(limit_sell("jt-lost-1", "5100"))

    assert broker.find_order_by_client_id(ACCOUNT, "jt-lost-1") is None


def test_a_server_error_on_an_order_is_unknown_but_on_a_read_is_safe_to_retry(fake, session):
    broker = TradovateBroker(make_client(fake, session))
    broker.list_accounts()
    fake.fail_next(PLACE, status=500)
    fake.fail_next("/order/list", status=503)

    with pytest.raises(OrderOutcomeUnknown, match="HTTP 500"):
        broker.place_order(limit_sell("jt-500", "5100"))
    with pytest.raises(BrokerUnavailable, match="HTTP 503"):
        broker.list_orders(ACCOUNT)

    assert len(fake.requests_to(PLACE)) == 1
    assert len(fake.requests_to("/order/list")) == 1


def test_a_slow_down_answer_to_an_order_means_not_placed_never_resent_and_try_again_in_a_minute(
    fake, session, sleeps
):
    broker = TradovateBroker(make_client(fake, session, sleeps=sleeps))
    broker.list_accounts()
    fake.fail_next(PLACE, status=423)

    # BrokerUnavailable, not OrderOutcomeUnknown: Tradovate turned the order away, so it was not placed.
    with pytest.raises(BrokerUnavailable, match="asks us to slow down") as caught:
        broker.place_order(limit_sell("jt-limited", "5100"))

    assert "nothing was done" in caught.value.message
    assert caught.value.retry_after == 60
    assert len(fake.requests_to(PLACE)) == 1
    assert fake.orders_with_client_id("jt-limited") == []
    assert sleeps == []
    assert len(fake.requests_to(LOGIN)) == 1  # not mistaken for an expired session


def test_a_slow_down_answer_to_a_read_is_not_retried_and_says_to_wait_a_minute(fake, session, sleeps):
    broker = TradovateBroker(make_client(fake, session, sleeps=sleeps))
    broker.list_accounts()
    fake.fail_next("/order/list", status=423)

    with pytest.raises(BrokerUnavailable, match="asks us to slow down") as caught:
        broker.list_orders(ACCOUNT)

    assert caught.value.retry_after == 60
    assert len(fake.requests_to("/order/list")) == 1
    assert sleeps == []


@pytest.mark.parametrize("path", [PLACE, "/order/list", LOGIN])
def test_a_lock_out_is_not_placed_never_resent_and_rests_the_login_for_an_hour(fake, session, sleeps, path):
    broker = TradovateBroker(make_client(fake, session, sleeps=sleeps))
    if path != LOGIN:
        broker.list_accounts()
    fake.fail_next(path, status=429)

    if path == "/order/list":
        call = partial(broker.list_orders, ACCOUNT)
    else:
        call = partial(broker.place_order, limit_sell("jt-locked", "5100"))

    with pytest.raises(BrokerNeedsAttention, match="locked this login out for an hour") as caught:
        call()

    assert (caught.value.reason, caught.value.retry_after) == ("locked_out", 3600)
    assert "nothing was done" in caught.value.message
    assert len(fake.requests_to(path)) == 1
    assert fake.orders_with_client_id("jt-locked") == []
    assert sleeps == []


def test_a_connection_refused_before_sending_is_safe_to_retry(session):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = TradovateToken(access_token="tok-unused", expires_at=datetime.now(UTC) + timedelta(hours=1))
    client = TradovateClient(
        f"http://127.0.0.1:{port}/v1", credentials=None, token_store=MemoryTokenStore(token), session=session
    )

    with pytest.raises(BrokerUnavailable, match="nothing was sent"):
        TradovateBroker(client).cancel_order("123")


def test_a_refusal_reaches_the_caller_verbatim(fake, session):
    broker = TradovateBroker(make_client(fake, session))
    broker.list_accounts()
    text = "Max position limit of 5 contracts reached for DEMO12345 (ESZ6)."
    fake.refuse_next(PLACE, reason="MaxPosLimitReached", text=text)

    with pytest.raises(OrderRejected) as caught:
        broker.place_order(limit_sell("jt-refused", "5100"))

    assert str(caught.value) == caught.value.text == text
    assert caught.value.reason == "MaxPosLimitReached"
    assert fake.orders_with_client_id("jt-refused") == []


def test_cancelling_a_filled_order_is_refused_in_tradovates_words(fake, session):
    broker = TradovateBroker(make_client(fake, session))
    placed = broker.place_order(market_buy("jt-filled", symbol="ESZ6"))

    with pytest.raises(OrderRejected, match=r"^Order is not working$"):
        broker.cancel_order(placed.broker_order_id)


def test_an_unknown_contract_is_refused_before_any_order_is_sent(fake, session):
    broker = TradovateBroker(make_client(fake, session))

    with pytest.raises(OrderRejected, match="no contract named ESZ9"):
        broker.place_order(market_buy("jt-nocontract", symbol="ESZ9"))

    assert fake.requests_to(PLACE) == []


def test_tokens_and_passwords_never_appear_in_logs_or_errors(fake, session, caplog):
    caplog.set_level(logging.DEBUG)
    clock = Clock()
    store = MemoryTokenStore()
    broker = TradovateBroker(make_client(fake, session, store=store, clock=clock))
    messages: list[str] = []

    broker.place_bracket(
        BracketRequest(
            entry=market_buy("jt-log-1"),
            take_profit=BracketLeg(client_id="jt-log-tp", order_type="Limit", price=Decimal("5010")),
        )
    )
    clock.now = store.get().expires_at - timedelta(minutes=5)
    broker.list_orders(ACCOUNT)
    fake.expire_tokens()
    broker.list_positions(ACCOUNT)
    fake.slow_next(PLACE)
    impatient = TradovateBroker(make_client(fake, session, store=store, clock=clock, timeout=(1.0, 0.2)))
    for failing in (
        lambda: impatient.place_order(limit_sell("jt-log-2", "5100")),
        lambda: TradovateBroker(
            make_client(fake, session, creds=credentials(password="nope"))
        ).list_accounts(),
    ):
        with pytest.raises(BrokerError) as caught:
            failing()
        messages.append(str(caught.value))

    secrets = [*fake.tokens, PASSWORD, SEC, "nope"]
    assert len(fake.tokens) >= 3  # login, renewal, login after expiry
    logged = caplog.text + "\n".join(messages) + repr(store.get()) + repr(credentials())
    assert [secret for secret in secrets if secret in logged] == []
    assert "Tradovate GET /order/list -> 200" in caplog.text


# --- reading -----------------------------------------------------------------------------------------------


def test_orders_positions_fills_and_balance_are_read_in_our_terms(fake, session):
    broker = TradovateBroker(make_client(fake, session))
    entry = broker.place_bracket(
        BracketRequest(
            entry=market_buy("jt-read-entry", quantity=2),
            take_profit=BracketLeg(client_id="jt-read-tp", order_type="Limit", price=Decimal("5010")),
            stop_loss=BracketLeg(client_id="jt-read-sl", order_type="Stop", stop_price=Decimal("4990")),
        )
    )
    other_account = OrderRequest(
        client_id="jt-other",
        account_id=str(OTHER_ACCOUNT_ID),
        account_spec=OTHER_ACCOUNT_NAME,
        symbol="NQ1!",
        action="Sell",
        order_type="Market",
        quantity=1,
    )
    broker.place_order(other_account)
    fake.set_price("ESZ6", Decimal("5012"))

    orders = {order.client_id: order for order in broker.list_orders(ACCOUNT)}
    (position,) = broker.list_positions(str(OTHER_ACCOUNT_ID))
    fills = broker.list_fills(ACCOUNT)
    balance = broker.account_balance(ACCOUNT)

    assert set(orders) == {"jt-read-entry", "jt-read-tp", "jt-read-sl"}
    take_profit = orders["jt-read-tp"]
    assert take_profit.broker_order_id == entry.take_profit_id
    assert (take_profit.status, take_profit.raw_status, take_profit.action) == (
        OrderStatus.FILLED,
        "Filled",
        "Sell",
    )
    assert (take_profit.quantity, take_profit.price, take_profit.symbol) == (2, Decimal("5010"), "ESZ6")
    assert take_profit.parent_id == entry.entry_id
    assert take_profit.oco_id == entry.stop_loss_id
    assert orders["jt-read-sl"].status == OrderStatus.CANCELLED
    assert broker.list_positions(ACCOUNT) == []
    assert (position.symbol, position.quantity, position.avg_price) == ("NQZ6", -1, Decimal("18000"))
    assert sorted((fill.action, fill.quantity, fill.price) for fill in fills) == [
        ("Buy", 2, Decimal("5000")),
        ("Sell", 2, Decimal("5010")),
    ]
    assert {fill.broker_order_id for fill in fills} == {entry.entry_id, entry.take_profit_id}
    assert balance.realized_pnl == Decimal("1000")  # 10 points x 2 contracts x $50
    assert balance.cash_balance == Decimal("51000")


def test_continuous_symbols_resolve_to_the_front_month_once_per_process(fake, session):
    broker = TradovateBroker(make_client(fake, session))

    assert broker.resolve_contract("MES1!") == (fake.contract_id("MESZ6"), "MESZ6")
    assert broker.resolve_contract("CME_MINI:MES1!") == (fake.contract_id("MESZ6"), "MESZ6")
    assert broker.resolve_contract("MESZ2026") == (fake.contract_id("MESZ6"), "MESZ6")
    assert broker.resolve_contract("CL1!") == (fake.contract_id("CLF7"), "CLF7")

    assert [request.query for request in fake.requests_to("/contract/suggest")] == [
        {"t": "MES", "l": "5"},
        {"t": "CL", "l": "5"},
    ]
    assert fake.requests_to("/contract/find") == []


@pytest.mark.parametrize(
    ("symbol", "root", "contract_name"),
    [
        ("ES", "ES", None),
        ("ES1!", "ES", None),
        ("CME_MINI:ES1!", "ES", None),
        ("esz6", "ES", "ESZ6"),
        ("ESZ2026", "ES", "ESZ6"),
        ("ZNH27", "ZN", "ZNH7"),
        ("M2KZ6", "M2K", "M2KZ6"),
        ("M2K1!", "M2K", None),
    ],
)
def test_symbols_are_understood_as_tradovate_names_them(symbol, root, contract_name):
    parsed = parse_symbol(symbol)

    assert (parsed.root, parsed.contract_name) == (root, contract_name)


@pytest.mark.parametrize(
    "changes",
    [
        {"client_id": "x" * 65},
        {"quantity": 0},
        {"quantity": True},
        {"order_type": "Limit"},
        {"price": Decimal("5000")},
        {"price": 5000.0, "order_type": "Limit"},
        {"action": "Short"},
    ],
)
def test_an_order_request_that_cannot_be_right_is_refused_at_construction(changes):
    fields = {
        "client_id": "jt-1",
        "account_id": ACCOUNT,
        "account_spec": DEMO_ACCOUNT_NAME,
        "symbol": "ES1!",
        "action": "Buy",
        "order_type": "Market",
        "quantity": 1,
    }

    with pytest.raises(ValueError, match=r"must|needs|takes no"):
        OrderRequest(**{**fields, **changes})
