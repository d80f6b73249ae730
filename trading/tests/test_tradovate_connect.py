"""Connecting Tradovate accounts: OAuth with a session-bound state, the live-then-demo code exchange, the
connection test with balances, the choice of sub-accounts and the needs-attention state on the pages."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from trading.models import BrokerAccount, BrokerSubAccount
from trading.services.broker_accounts import broker_account_mark_needs_attention
from trading.tests.execution_support import *  # noqa: F403  fixtures
from trading.tests.factories import BrokerAccountFactory, TradovateAccountFactory
from trading.tests.fake_tradovate import (
    BAD_LOGIN_TEXT,
    DEMO_ACCOUNT_ID,
    DEMO_ACCOUNT_NAME,
    OAUTH_CLIENT_ID,
    OAUTH_CLIENT_SECRET,
    OTHER_ACCOUNT_ID,
    OTHER_ACCOUNT_NAME,
    PASSWORD,
    USERNAME,
    FakeTradovate,
    running_fake_tradovate,
)
from trading.tests.test_tradovate_pipeline import *  # noqa: F403  fixtures
from trading.tests.test_tradovate_pipeline import LOGIN

pytestmark = pytest.mark.django_db

OAUTH_URL = "https://trader.tradovate.example/oauth"
EXCHANGE = "/auth/oauthtoken"


@pytest.fixture
def live() -> Iterator[FakeTradovate]:
    """Tradovate's live environment, a second fake."""
    with running_fake_tradovate() as server:
        yield server


@pytest.fixture
def oauth(tradovate_settings, live):
    """OAuth set up, with live and demo Tradovate on 127.0.0.1."""
    tradovate_settings.TRADOVATE_LIVE_URL = live.base_url
    tradovate_settings.TRADOVATE_OAUTH_URL = OAUTH_URL
    tradovate_settings.TRADOVATE_CLIENT_ID = OAUTH_CLIENT_ID
    tradovate_settings.TRADOVATE_CLIENT_SECRET = OAUTH_CLIENT_SECRET
    return tradovate_settings


def start(client, **data) -> str:
    """Post the connect form; return the state carried to Tradovate's authorize page."""
    response = client.post("/connect-tradovate", data)
    assert response.status_code == 302, response.content.decode()
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == OAUTH_URL
    query = parse_qs(location.query)
    assert query["response_type"] == ["code"]
    assert query["client_id"] == [OAUTH_CLIENT_ID]
    assert query["redirect_uri"] == ["http://testserver/oauth/callback"]
    return query["state"][0]


def callback(client, **params):
    return client.get("/oauth/callback", params)


def raw_column(account_id: int, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM trading_brokeraccount WHERE id = %s", [account_id])  # noqa: S608
        return cursor.fetchone()[0]


# --- who may connect ----------------------------------------------------------------------------------------


def test_connecting_needs_a_signed_in_approved_user(client, pending_user, oauth):
    assert client.get("/connect-tradovate").status_code == 302
    assert "/login" in client.get("/connect-tradovate")["Location"]
    client.force_login(pending_user)
    assert client.get("/connect-tradovate").status_code == 403
    assert client.get("/oauth/callback", {"code": "x", "state": "y"}).status_code == 403


def test_the_connect_page_offers_the_owners_tradovate_accounts_only(owner_client, owner, stranger, oauth):
    TradovateAccountFactory(owner=owner, name="Mine")
    TradovateAccountFactory(owner=stranger, name="Theirs")
    BrokerAccountFactory(owner=owner, name="Paper one")

    page = owner_client.get("/connect-tradovate").content.decode()

    assert "Mine" in page
    assert "Theirs" not in page
    assert "Paper one" not in page


def test_a_new_account_needs_a_name_that_is_not_taken(owner_client, owner, oauth):
    TradovateAccountFactory(owner=owner, name="Apex")

    assert "Give the new account a name" in owner_client.post("/connect-tradovate", {}).content.decode()
    taken = owner_client.post("/connect-tradovate", {"name": "Apex"})
    assert taken.status_code == 400
    assert "already have a broker account with this name" in taken.content.decode()


def test_without_an_oauth_application_the_page_says_so_and_sends_nobody_away(
    owner_client, tradovate_settings
):
    tradovate_settings.TRADOVATE_CLIENT_ID = ""

    response = owner_client.post("/connect-tradovate", {"name": "New"})

    assert response.status_code == 400
    assert "not set up on this server" in response.content.decode()


# --- the state ----------------------------------------------------------------------------------------------


def test_a_code_from_demo_is_tried_on_live_first_then_stored_encrypted_with_its_environment(
    owner_client, owner, oauth, fake, live
):
    state = start(owner_client, name="Apex 50K")
    code = fake.issue_oauth_code()

    response = callback(owner_client, code=code, state=state)

    assert response.status_code == 200
    [refused] = live.requests_to(EXCHANGE)
    [accepted] = fake.requests_to(EXCHANGE)
    assert (
        refused.body
        == accepted.body
        == {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "http://testserver/oauth/callback",
            "client_id": OAUTH_CLIENT_ID,
            "client_secret": OAUTH_CLIENT_SECRET,
        }
    )
    account = BrokerAccount.objects.get(owner=owner, name="Apex 50K")
    assert (account.kind, account.is_demo, account.status) == ("tradovate", True, "active")
    assert account.oauth_token
    assert account.oauth_token in fake.tokens
    assert account.oauth_token not in raw_column(account.pk, "oauth_token")
    expected = timezone.now() + timedelta(seconds=4800)
    assert abs((account.oauth_token_expires_at - expected).total_seconds()) < 60
    page = response.content.decode()
    assert account.oauth_token not in page
    assert DEMO_ACCOUNT_NAME in page
    assert OTHER_ACCOUNT_NAME in page
    assert "50000.00" in page
    assert "Demo" in page
    assert fake.requests_to(LOGIN) == []  # the OAuth token is used: no password login
    # Two accounts under the login: the owner picks, nothing is traded until then.
    assert not account.subaccounts.filter(active=True).exists()


def test_a_code_from_live_makes_a_live_account_and_demo_is_never_asked(
    owner_client, owner, oauth, fake, live
):
    state = start(owner_client, name="Live money")

    response = callback(owner_client, code=live.issue_oauth_code(), state=state)

    assert response.status_code == 200
    account = BrokerAccount.objects.get(name="Live money")
    assert not account.is_demo
    assert fake.requests_to(EXCHANGE) == []
    assert "Live" in response.content.decode()


def test_a_wrong_state_is_refused_and_uses_up_the_connection(owner_client, owner, oauth, fake):
    state = start(owner_client, name="Apex 50K")
    code = fake.issue_oauth_code()

    wrong = callback(owner_client, code=code, state=state[:-2] + "xx")
    after = callback(owner_client, code=code, state=state)

    assert wrong.status_code == 400
    assert "state check failed" in wrong.content.decode()
    assert after.status_code == 400
    assert "already used" in after.content.decode()
    assert fake.requests_to(EXCHANGE) == []
    assert not BrokerAccount.objects.filter(name="Apex 50K").exists()


def test_a_missing_state_is_refused(owner_client, oauth, fake):
    start(owner_client, name="Apex 50K")

    response = callback(owner_client, code=fake.issue_oauth_code())

    assert response.status_code == 400
    assert "state check failed" in response.content.decode()
    assert fake.requests_to(EXCHANGE) == []


def test_a_callback_without_a_connection_started_in_this_session_is_refused(
    client, stranger, owner, oauth, fake
):
    client.force_login(owner)
    state = start(client, name="Apex 50K")
    client.force_login(stranger)  # another person's session never saw this state

    response = callback(client, code=fake.issue_oauth_code(), state=state)

    assert response.status_code == 400
    assert "does not belong to a connection started in this browser session" in response.content.decode()
    assert not BrokerAccount.objects.exists()


def test_a_replayed_callback_is_refused_and_the_code_is_exchanged_once(owner_client, owner, oauth, fake):
    state = start(owner_client, name="Apex 50K")
    code = fake.issue_oauth_code()
    assert callback(owner_client, code=code, state=state).status_code == 200

    replay = callback(owner_client, code=code, state=state)

    assert replay.status_code == 400
    assert "already used" in replay.content.decode()
    assert len(fake.requests_to(EXCHANGE)) == 1
    assert BrokerAccount.objects.filter(owner=owner).count() == 1


def test_a_state_older_than_ten_minutes_is_refused(owner_client, oauth, fake):
    state = start(owner_client, name="Apex 50K")

    with time_machine.travel(timezone.now() + timedelta(minutes=11)):
        response = callback(owner_client, code=fake.issue_oauth_code(), state=state)

    assert response.status_code == 400
    assert "more than 10 minutes" in response.content.decode()


def test_a_user_who_declines_on_tradovate_is_told_so(owner_client, oauth):
    state = start(owner_client, name="Apex 50K")

    response = callback(
        owner_client, state=state, error="access_denied", error_description="The user declined."
    )

    assert response.status_code == 400
    assert "Tradovate did not authorise the connection: The user declined." in response.content.decode()


def test_a_code_neither_environment_accepts_is_reported_in_tradovates_words(owner_client, oauth, fake, live):
    state = start(owner_client, name="Apex 50K")

    response = callback(owner_client, code="code-made-up", state=state)

    assert response.status_code == 400
    assert "The code is invalid or expired." in response.content.decode()
    assert len(live.requests_to(EXCHANGE)) == len(fake.requests_to(EXCHANGE)) == 1
    assert not BrokerAccount.objects.exists()


def test_reconnecting_an_account_that_needs_attention_makes_it_trade_again(owner_client, owner, oauth, fake):
    account = TradovateAccountFactory(owner=owner, name="Apex 50K", username=USERNAME, password=PASSWORD)
    BrokerAccount.objects.filter(pk=account.pk).update(access_token="old-token")
    broker_account_mark_needs_attention(
        account=account, reason="captcha", message="Tradovate asks for a captcha."
    )
    state = start(owner_client, account=account.pk)

    response = callback(owner_client, code=fake.issue_oauth_code(), state=state)

    assert response.status_code == 200
    account.refresh_from_db()
    assert (account.status, account.status_reason, account.retry_not_before) == ("active", "", None)
    assert account.access_token == ""
    assert account.oauth_token in fake.tokens
    assert account.password == PASSWORD  # the password stays as the fallback login


def test_one_cannot_connect_someone_elses_account(owner_client, stranger, oauth):
    theirs = TradovateAccountFactory(owner=stranger)

    response = owner_client.post("/connect-tradovate", {"account": theirs.pk})

    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()


# --- testing a connection and choosing sub-accounts ---------------------------------------------------------


def test_testing_a_password_login_lists_its_accounts_with_balances(owner_client, account, fake):
    response = owner_client.post(f"/broker-accounts/{account.pk}/test")

    page = response.content.decode()
    assert response.status_code == 200
    assert "The connection works" in page
    assert DEMO_ACCOUNT_NAME in page
    assert OTHER_ACCOUNT_NAME in page
    assert page.count("50000.00") == 4  # cash and net liquidation of each account
    assert len(fake.requests_to(LOGIN)) == 1
    assert len(fake.bodies("/cashBalance/getcashbalancesnapshot")) == 2


def test_choosing_sub_accounts_trades_exactly_the_ticked_ones(owner_client, account, fake):
    response = owner_client.post(
        f"/broker-accounts/{account.pk}/subaccounts", {"subaccount": [str(OTHER_ACCOUNT_ID)]}
    )

    assert response.status_code == 302
    chosen = dict(BrokerSubAccount.objects.filter(account=account).values_list("broker_id", "active"))
    assert chosen == {str(DEMO_ACCOUNT_ID): False, str(OTHER_ACCOUNT_ID): True}
    # The choice survives the next connection test.
    owner_client.post(f"/broker-accounts/{account.pk}/test")
    chosen = dict(BrokerSubAccount.objects.filter(account=account).values_list("broker_id", "active"))
    assert chosen == {str(DEMO_ACCOUNT_ID): False, str(OTHER_ACCOUNT_ID): True}


def test_choosing_nothing_or_an_account_of_another_login_is_refused_in_words(owner_client, account, fake):
    nothing = owner_client.post(f"/broker-accounts/{account.pk}/subaccounts", {}, follow=True)
    foreign = owner_client.post(
        f"/broker-accounts/{account.pk}/subaccounts", {"subaccount": ["99999"]}, follow=True
    )

    assert "Choose at least one account to trade." in nothing.content.decode()
    assert "99999 is not an account of this login" in foreign.content.decode()
    assert list(account.subaccounts.filter(active=True).values_list("broker_id", flat=True)) == [
        str(DEMO_ACCOUNT_ID)
    ]


def test_a_refused_password_marks_the_account_with_tradovates_words(owner_client, owner, tradovate_settings):
    account = TradovateAccountFactory(owner=owner, username=USERNAME, password="wrong-password")

    page = owner_client.post(f"/broker-accounts/{account.pk}/test").content.decode()

    account.refresh_from_db()
    assert (account.status, account.status_reason) == ("needs_attention", "credentials")
    assert BAD_LOGIN_TEXT in account.status_message
    assert BAD_LOGIN_TEXT in page
    assert f"/connect-tradovate?account={account.pk}" in page


def test_no_login_is_tried_during_the_captcha_pause(owner_client, account, fake):
    broker_account_mark_needs_attention(
        account=account, reason="captcha", message="Tradovate asks for a captcha."
    )

    page = owner_client.post(f"/broker-accounts/{account.pk}/test").content.decode()

    assert "No new login is tried before" in page
    assert fake.requests == []


def test_a_working_connection_clears_the_needs_attention_state_after_the_pause(owner_client, account, fake):
    broker_account_mark_needs_attention(
        account=account,
        reason="captcha",
        message="Tradovate asks for a captcha.",
        retry_not_before=timezone.now() - timedelta(minutes=1),
    )

    owner_client.post(f"/broker-accounts/{account.pk}/test")

    account.refresh_from_db()
    assert account.status == "active"


def test_testing_a_paper_account_shows_its_simulated_balance(owner_client, owner):
    paper = BrokerAccountFactory(owner=owner)

    page = owner_client.post(f"/broker-accounts/{paper.pk}/test").content.decode()

    assert "The connection works" in page
    assert "100000.00" in page


def test_one_cannot_test_or_choose_for_someone_elses_account(stranger_client, account):
    assert stranger_client.post(f"/broker-accounts/{account.pk}/test").status_code == 404
    assert (
        stranger_client.post(f"/broker-accounts/{account.pk}/subaccounts", {"subaccount": ["1"]}).status_code
        == 404
    )


def test_the_accounts_page_shows_the_environment_and_how_to_connect(owner_client, owner, account):
    live = TradovateAccountFactory(owner=owner, name="Live one", is_demo=False)

    page = owner_client.get("/broker-accounts/").content.decode()

    assert ">Demo<" in page
    assert ">Live<" in page
    assert "Connect Tradovate" in page
    assert f"/broker-accounts/{account.pk}/test" in page
    assert f"/connect-tradovate?account={live.pk}" in page
