"""The buyer's /manage page."""

from datetime import timedelta

import pytest
from django.utils import timezone

from pineaccess.models import ScriptAccess
from pineaccess.tests.factories import ScriptAccessFactory

pytestmark = pytest.mark.django_db

Status = ScriptAccess.Status


def test_the_page_needs_a_login(client):
    answer = client.get("/manage")
    assert answer.status_code == 302
    assert answer["Location"].startswith("/login")


def test_the_page_lists_the_users_scripts_with_status_and_expiry(client, buyer, stranger):
    expiry = timezone.now() + timedelta(days=12)
    ScriptAccessFactory(user=buyer, script__name="Trend Rider", expires_at=expiry)
    ScriptAccessFactory(user=buyer, script__name="Lifetime Pro", expires_at=None, status=Status.PENDING)
    ScriptAccessFactory(
        user=buyer,
        script__name="Broken",
        status=Status.FAILED,
        error_code="user_not_found",
        last_error='There is no TradingView user named "Alice_Trades".',
    )
    ScriptAccessFactory(user=buyer, script__name="Gone", status=Status.REMOVED)
    ScriptAccessFactory(user=stranger, script__name="Not Mine")
    client.force_login(buyer)

    page = client.get("/manage").content.decode()

    assert "Trend Rider" in page
    assert expiry.strftime("%Y") in page
    assert "Lifetime Pro" in page
    assert "Lifetime" in page
    assert "Pending" in page
    assert "There is no TradingView user named &quot;Alice_Trades&quot;." in page
    assert "Gone" not in page
    assert "Not Mine" not in page
    assert "data-tradingview-username-check" not in page  # no change form while access is live


def test_the_page_does_not_query_per_row(client, buyer, django_assert_max_num_queries):
    for _ in range(6):
        ScriptAccessFactory(user=buyer)
    client.force_login(buyer)
    with django_assert_max_num_queries(8):
        assert client.get("/manage").status_code == 200


def test_a_user_without_access_can_change_the_username_through_the_form(client, buyer, fake_tv):
    fake_tv.add_user("Brand_New")
    client.force_login(buyer)

    page = client.get("/manage").content.decode()
    assert 'data-tradingview-username-check="/api/tradingview/validate-username"' in page
    assert "pineaccess/username-check.js" in page

    answer = client.post("/manage", {"tradingview_username": "brand_new"}, follow=True)
    assert "Your TradingView username is now Brand_New." in answer.content.decode()
    buyer.refresh_from_db()
    assert buyer.tradingview_username == "Brand_New"


def test_an_unknown_username_is_shown_as_a_form_error(client, buyer, fake_tv):
    client.force_login(buyer)
    answer = client.post("/manage", {"tradingview_username": "Ghost"})
    assert answer.status_code == 400
    assert "There is no TradingView user named &quot;Ghost&quot;" in answer.content.decode()
    buyer.refresh_from_db()
    assert buyer.tradingview_username == "Alice_Trades"


def test_a_change_posted_while_access_is_live_is_refused(client, buyer, fake_tv):
    ScriptAccessFactory(user=buyer)
    fake_tv.add_user("Brand_New")
    client.force_login(buyer)
    answer = client.post("/manage", {"tradingview_username": "Brand_New"}, follow=True)
    assert "cannot change while you have script access" in answer.content.decode()
    buyer.refresh_from_db()
    assert buyer.tradingview_username == "Alice_Trades"


def test_the_form_needs_a_csrf_token(buyer, fake_tv):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(buyer)
    assert strict.post("/manage", {"tradingview_username": "x"}).status_code == 403


def test_the_script_is_served_locally(client):
    from django.contrib.staticfiles import finders

    path = finders.find("pineaccess/username-check.js")
    assert path is not None
    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    assert "fetch(" in source
    assert "https://" not in source
    assert "cdn" not in source.lower()
