"""The broker for an account: paper or Tradovate, with Tradovate's token shared through the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from trading.brokers import registry
from trading.brokers.base import BrokerNeedsAttention
from trading.brokers.paper import PaperBroker
from trading.brokers.registry import AccountTokenStore, broker_for_account
from trading.brokers.tradovate import TradovateBroker, TradovateToken
from trading.models import BrokerAccount
from trading.tests.factories import BrokerAccountFactory, TradovateAccountFactory

pytestmark = pytest.mark.django_db


def test_a_paper_account_trades_on_the_paper_broker(owner):
    assert isinstance(broker_for_account(BrokerAccountFactory(owner=owner)), PaperBroker)


def test_a_tradovate_login_trades_on_tradovate_against_its_environment(owner, settings):
    settings.TRADOVATE_DEMO_URL = "http://127.0.0.1:9/demo/v1"
    account = TradovateAccountFactory(owner=owner)

    broker = broker_for_account(account)

    assert isinstance(broker, TradovateBroker)
    assert broker.client.base_url == "http://127.0.0.1:9/demo/v1"


def test_a_tradovate_account_without_any_login_needs_its_owner(owner):
    account = TradovateAccountFactory(owner=owner, username="", password="")

    with pytest.raises(BrokerNeedsAttention, match="no Tradovate login"):
        broker_for_account(account)


def test_an_account_marked_as_needing_attention_is_not_used(owner):
    account = TradovateAccountFactory(owner=owner)
    BrokerAccount.objects.filter(pk=account.pk).update(
        status=BrokerAccount.Status.NEEDS_ATTENTION,
        status_reason="captcha",
        status_message="Connect with OAuth.",
    )
    account.refresh_from_db()

    with pytest.raises(BrokerNeedsAttention, match="Connect with OAuth") as raised:
        broker_for_account(account)
    assert raised.value.reason == "captcha"


def test_the_token_store_shares_the_freshest_token_encrypted_on_the_account_row(owner):
    account = TradovateAccountFactory(owner=owner)
    store = AccountTokenStore(account.pk)
    assert store.get() is None
    expires = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

    store.put(TradovateToken("access-secret", expires, "password", user_id=42))
    BrokerAccount.objects.filter(pk=account.pk).update(
        oauth_token="oauth-secret", oauth_token_expires_at=expires - timedelta(hours=1)
    )

    token = AccountTokenStore(account.pk).get()
    assert (token.access_token, token.expires_at, token.source, token.user_id) == (
        "access-secret",
        expires,
        "password",
        42,
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token FROM trading_brokeraccount WHERE id = %s", [account.pk])
        [stored] = cursor.fetchone()
    assert stored
    assert "access-secret" not in stored
    with store.renewal_lock():
        pass


def test_a_stored_token_is_reused_by_the_process_without_a_query_until_it_is_due_for_renewal(
    owner, django_assert_num_queries, monkeypatch
):
    account = TradovateAccountFactory(owner=owner)
    fresh = TradovateToken("fresh-token", datetime.now(UTC) + timedelta(hours=1), "password")
    AccountTokenStore(account.pk).put(fresh)

    with django_assert_num_queries(0):  # another decision of this process, a moment later
        assert AccountTokenStore(account.pk).get() == fresh

    # Renewed by another process: seen under the renewal lock at once, and by everyone within the cache time.
    renewed = TradovateToken("renewed-token", datetime.now(UTC) + timedelta(hours=2), "password")
    BrokerAccount.objects.filter(pk=account.pk).update(
        access_token=renewed.access_token, access_token_expires_at=renewed.expires_at
    )
    store = AccountTokenStore(account.pk)
    with store.renewal_lock():
        assert store.get().access_token == "renewed-token"
    monkeypatch.setattr(registry, "TOKEN_CACHE_SECONDS", 0.0)
    assert AccountTokenStore(account.pk).get().access_token == "renewed-token"


def test_a_token_due_for_renewal_is_always_read_from_the_row(owner, django_assert_num_queries):
    account = TradovateAccountFactory(owner=owner)
    ending = TradovateToken("ending-token", datetime.now(UTC) + timedelta(minutes=5), "password")
    AccountTokenStore(account.pk).put(ending)

    with django_assert_num_queries(1):
        assert AccountTokenStore(account.pk).get().access_token == "ending-token"
