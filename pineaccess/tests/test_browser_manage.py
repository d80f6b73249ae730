"""The buyer's /manage page in a real browser: script status and the live TradingView username check."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import Page, expect

from pineaccess.models import ScriptAccess
from pineaccess.tests.factories import ScriptAccessFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

Status = ScriptAccess.Status
CHECK_URL = re.compile(r"/api/tradingview/validate-username\?username=")


def open_manage_page_as(page: Page, live_server, user) -> Page:
    """Open /manage in a browser that holds the user's session, as after logging in."""
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])
    page.goto("/manage")
    expect(page.get_by_role("heading", name="Your scripts")).to_be_visible()
    return page


def type_username(page: Page, text: str) -> None:
    """Type a new TradingView username and wait for the page's own check of it with the server."""
    with page.expect_response(CHECK_URL) as answer:
        page.get_by_label(re.compile(r"^\s*New TradingView username\*?\s*$")).fill(text)
    assert answer.value.status == 200


def test_typing_a_name_tradingview_knows_shows_it_valid_in_tradingviews_spelling_and_saving_it_changes_it(
    page, live_server, buyer, fake_tv
):
    fake_tv.add_user("Brand_New")
    open_manage_page_as(page, live_server, buyer)
    expect(page.get_by_test_id("tradingview-username")).to_have_text("Alice_Trades")
    field = page.get_by_label(re.compile(r"^\s*New TradingView username\*?\s*$"))
    result = page.locator("[data-username-check-result]")

    type_username(page, "brand_new")

    expect(result).to_have_text("TradingView knows this user: Brand_New.")
    expect(result).to_have_class(re.compile(r"\btext-success\b"))
    expect(field).to_have_class(re.compile(r"\bis-valid\b"))
    assert [request.query["s"] for request in fake_tv.requests_to("/username_hint/")] == ["brand_new"]

    page.get_by_role("button", name="Change username").click()

    expect(page.get_by_role("alert")).to_contain_text("Your TradingView username is now Brand_New.")
    expect(page.get_by_test_id("tradingview-username")).to_have_text("Brand_New")
    buyer.refresh_from_db()
    assert (buyer.tradingview_username, buyer.tradingview_verified) == ("Brand_New", True)


def test_typing_a_name_tradingview_does_not_know_shows_the_error_and_saving_it_keeps_the_old_name(
    page, live_server, buyer, fake_tv
):
    fake_tv.add_user("Brand_New")
    open_manage_page_as(page, live_server, buyer)
    field = page.get_by_label(re.compile(r"^\s*New TradingView username\*?\s*$"))
    result = page.locator("[data-username-check-result]")

    type_username(page, "Ghost_Trader_9")

    expect(result).to_contain_text('There is no TradingView user named "Ghost_Trader_9".')
    expect(result).to_have_class(re.compile(r"\btext-danger\b"))
    expect(field).to_have_class(re.compile(r"\bis-invalid\b"))
    expect(field).to_have_attribute("aria-invalid", "true")

    # Correcting the name clears the error.
    type_username(page, "Brand_New")
    expect(result).to_have_text("TradingView knows this user: Brand_New.")
    expect(field).not_to_have_class(re.compile(r"\bis-invalid\b"))

    # Saving an unknown name anyway is refused by the server too.
    type_username(page, "Ghost_Trader_9")
    page.get_by_role("button", name="Change username").click()
    expect(page.locator(".invalid-feedback")).to_contain_text(
        'There is no TradingView user named "Ghost_Trader_9"'
    )
    expect(page.get_by_test_id("tradingview-username")).to_have_text("Alice_Trades")
    buyer.refresh_from_db()
    assert buyer.tradingview_username == "Alice_Trades"


@pytest.mark.parametrize(
    ("status", "can_change"),
    [(Status.ACTIVE, False), (Status.REMOVING, False), (Status.REMOVED, True)],
    ids=["active", "being-removed", "removed"],
)
def test_the_username_can_change_only_once_no_access_remains_and_the_page_says_why_not(
    page, live_server, buyer, script, status, can_change
):
    ScriptAccessFactory(user=buyer, script=script, status=status)

    open_manage_page_as(page, live_server, buyer)

    explanation = page.get_by_text("Your TradingView username cannot change while you have script access")
    username_field = page.locator("input[data-tradingview-username-check]")
    rows = page.locator("#script-access tbody tr")
    if can_change:
        expect(username_field).to_be_visible()
        expect(explanation).to_have_count(0)
        expect(rows).to_have_count(0)  # removed access is no longer listed
        expect(page.get_by_text("You have no script access yet.")).to_be_visible()
    else:
        expect(explanation).to_be_visible()
        expect(username_field).to_have_count(0)
        expect(page.get_by_role("button", name="Change username")).to_have_count(0)
        expect(rows).to_have_count(1)
        expect(rows.first).to_have_attribute("data-status", status)
        expect(rows.first).to_contain_text("Trend Rider")
