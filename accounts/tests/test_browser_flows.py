"""The front door in a real browser: access key, registration, approval by staff, login limits, logout."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone
from playwright.sync_api import Locator, Page, expect

from accounts import services
from accounts.models import AccessKey, ApprovalLog, User
from justtrades.tests.factories import PASSWORD, UserFactory
from pineaccess import tasks
from pineaccess.models import ScriptAccess
from pineaccess.tests.factories import PineScriptFactory
from pineaccess.tests.fake_tradingview import (
    SELLER_PASSWORD,
    SELLER_USERNAME,
    FakeTradingView,
    running_fake_tradingview,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NEW_PASSWORD = "Plenty-of-Entropy-2024"


@pytest.fixture
def fake_tradingview(settings) -> Iterator[FakeTradingView]:
    """A fake TradingView on 127.0.0.1 that knows Alice, with the settings pointed at it."""
    with running_fake_tradingview() as fake:
        settings.TRADINGVIEW_URL = fake.base_url
        settings.TRADINGVIEW_USERNAME = SELLER_USERNAME
        settings.TRADINGVIEW_PASSWORD = SELLER_PASSWORD
        settings.TRADINGVIEW_BACKOFF_SECONDS = 0
        settings.TRADINGVIEW_MAX_ATTEMPTS = 2
        settings.TRADINGVIEW_TIMEOUT = (2, 5)
        fake.add_user("Alice_Trades")
        yield fake


@pytest.fixture
def other_browser(chromium, live_server) -> Iterator[Callable[..., Page]]:
    """Open pages in browsers of their own (another person's cookies), held to the live server like `page`;
    `signed_in=user` starts with that user's session, as if they had logged in earlier."""
    contexts = []
    outside: list[str] = []
    allowed = urlsplit(live_server.url).netloc

    def guard(route):
        if urlsplit(route.request.url).netloc != allowed:
            outside.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    def open_page(*, signed_in: User | None = None) -> Page:
        context = chromium.new_context(base_url=live_server.url)
        contexts.append(context)
        if signed_in is not None:
            client = Client()
            client.force_login(signed_in)
            cookie = client.cookies[settings.SESSION_COOKIE_NAME]
            context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])
        opened = context.new_page()
        opened.set_default_timeout(10_000)
        opened.route("**/*", guard)
        return opened

    yield open_page
    for context in contexts:
        context.close()
    assert not outside, f"The page tried to reach other hosts: {outside}"


def field(page: Page, label: str) -> Locator:
    """A form field by its label as shown, with or without the required-field asterisk."""
    return page.get_by_label(re.compile(rf"^\s*{re.escape(label)}\*?\s*$"))


def typed_like_a_person(raw_key: str) -> str:
    """The key as someone copies it by hand: lower case, groups separated by spaces."""
    return raw_key.lower().replace("-", " ")


def enter_key(page: Page, key: str) -> None:
    page.goto("/")
    field(page, "Access key").fill(key)
    page.get_by_role("button", name="Continue").click()


def register(page: Page, *, username: str, tradingview_username: str) -> None:
    field(page, "Username").fill(username)
    field(page, "Email address").fill(f"{username}@example.com")
    field(page, "Password").fill(NEW_PASSWORD)
    field(page, "Password confirmation").fill(NEW_PASSWORD)
    field(page, "TradingView username").fill(tradingview_username)
    page.get_by_role("button", name="Create account").click()


def log_in(page: Page, username: str, password: str, *, path: str = "/login") -> None:
    page.goto(path)
    field(page, "Username").fill(username)
    field(page, "Password").fill(password)
    page.get_by_role("main").get_by_role("button", name="Log in").click()


def staff_runs_user_action(page: Page, *, username: str, action: str, log_in_as: User | None = None) -> None:
    """Staff open the operator console (logging in first when asked), show pending users, tick one and run
    an action on them."""
    page.goto("/admin/")
    if log_in_as is not None:
        page.locator("#id_username").fill(log_in_as.username)
        page.locator("#id_password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Users", exact=True).click()
    page.locator("#changelist-filter").get_by_role("link", name="Pending approval").click()
    expect(page).to_have_url(re.compile(r"approval_status__exact=pending"))
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(username)
    rows.first.locator("input.action-select").check()
    page.locator("select[name=action]").select_option(label=action)
    page.get_by_role("button", name="Go", exact=True).click()


# ----------------------------------------------------------------------------------- key to active access


def test_a_buyer_redeems_a_key_typed_loosely_registers_and_sees_the_script_granted_on_tradingview(
    page, fake_tradingview, pineaccess_tasks
):
    script = PineScriptFactory(name="Trend Rider")
    fake_tradingview.add_script(script.pine_id, name="Trend Rider")
    issued = services.access_keys_create(count=1, scripts=[script], access_days=30)[0]
    before = timezone.now()

    enter_key(page, typed_like_a_person(issued.raw_key))

    expect(page).to_have_url(re.compile(r"/register$"))
    expect(page.get_by_role("alert")).to_contain_text("Key accepted. Create your account to redeem it.")
    expect(page.get_by_role("main")).to_contain_text("Trend Rider")
    expect(page.get_by_role("main")).to_contain_text("30 days")

    # Typed in lower case: the account keeps TradingView's own spelling.
    register(page, username="alice", tradingview_username="alice_trades")

    expect(page).to_have_url(re.compile(r"/manage$"))
    expect(page.get_by_role("alert")).to_contain_text("Your script access is being granted on TradingView")
    expect(page.get_by_test_id("tradingview-username")).to_have_text("Alice_Trades")
    row = page.locator("#script-access tbody tr", has_text="Trend Rider")
    expect(row).to_have_attribute("data-status", "pending")
    expect(row).to_contain_text("Pending")
    assert fake_tradingview.access(script.pine_id) == {}

    # No worker runs here: do the queued work as a Celery worker would.
    assert [name for name, *_args in pineaccess_tasks.committed] == ["grant_script_access"]
    for name, *args in pineaccess_tasks.committed:
        getattr(tasks, name).apply(args=args).get()
    page.reload()

    expect(row).to_have_attribute("data-status", "active")
    expect(row).to_contain_text("Active")
    expect(row).to_contain_text("Alice_Trades")
    user = User.objects.get(username="alice")
    assert user.is_approved
    assert AccessKey.objects.get(pk=issued.access_key.pk).redeemed_by == user
    access = ScriptAccess.objects.get(user=user, script=script)
    assert access.status == ScriptAccess.Status.ACTIVE
    assert (
        before + timedelta(days=30) - timedelta(seconds=1)
        <= access.expires_at
        <= timezone.now() + timedelta(days=30)
    )
    # TradingView holds the same expiry (to the second) for TradingView's spelling of the name.
    on_tradingview = fake_tradingview.access(script.pine_id)
    assert list(on_tradingview) == ["Alice_Trades"]
    assert on_tradingview["Alice_Trades"].replace(microsecond=0) == access.expires_at


# ------------------------------------------------------------------------------------------ refused keys


def _wrong_key() -> str:
    return "JT-AAAAA-BBBBB-CCCCC-DDDDD"


def _used_key() -> str:
    issued = services.access_keys_create(count=1)[0]
    services.access_key_redeem(access_key_id=issued.access_key.pk, user=UserFactory())
    return issued.raw_key


def _revoked_key() -> str:
    issued = services.access_keys_create(count=1)[0]
    services.access_keys_revoke(access_keys=[issued.access_key], revoked_by=None)
    return issued.raw_key


def _expired_key() -> str:
    issued = services.access_keys_create(count=1, valid_until=timezone.now() + timedelta(days=1))[0]
    AccessKey.objects.filter(pk=issued.access_key.pk).update(valid_until=timezone.now() - timedelta(hours=1))
    return issued.raw_key


@pytest.mark.parametrize(
    ("make_key", "message"),
    [
        (_wrong_key, "That access key is not valid."),
        (_used_key, "That access key has already been used: each key works only once."),
        (_revoked_key, "That access key has been revoked."),
        (_expired_key, "That access key has expired."),
    ],
    ids=["wrong", "used", "revoked", "expired"],
)
def test_a_key_that_cannot_be_redeemed_is_refused_on_the_home_page_with_its_own_reason(
    page, make_key, message
):
    raw_key = make_key()
    users_before = User.objects.count()

    enter_key(page, typed_like_a_person(raw_key))

    expect(page).to_have_url(re.compile(r"/$"))
    alert = page.locator(".alert-danger")
    expect(alert).to_have_count(1)
    expect(alert).to_contain_text(message)
    # Nothing about the other refusals leaks into the answer.
    for other in ("not valid", "already been used", "revoked", "expired"):
        if other not in message:
            expect(alert).not_to_contain_text(other)
    # Registration did not start.
    page.goto("/register")
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.get_by_role("alert")).to_contain_text("Registration needs an access key.")
    assert User.objects.count() == users_before


# ------------------------------------------------------------------------------------- approval by staff


def _register_pending_buyer(page: Page) -> None:
    issued = services.access_keys_create(count=1, auto_approve=False, note="reviewed by hand")[0]
    enter_key(page, issued.raw_key)
    expect(page.get_by_role("main")).to_contain_text(
        "your account is reviewed by staff before you can log in"
    )
    register(page, username="penny", tradingview_username="Alice_Trades")
    expect(page.get_by_role("heading", name="Waiting for approval")).to_be_visible()
    expect(page.get_by_role("main")).to_contain_text("Thank you, penny: your account has been created.")


def test_a_buyer_whose_key_needs_approval_waits_until_staff_approve_them_in_the_console(
    page, other_browser, fake_tradingview, staff
):
    UserFactory(username="alice", tradingview_username="Someone_Else")  # approved: not in the pending list
    _register_pending_buyer(page)

    # Before approval the login form says why it refuses, and the site stays closed.
    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        log_in(page, "penny", NEW_PASSWORD)
    assert answer.value.status == 403
    expect(page.get_by_role("heading", name="Waiting for approval")).to_be_visible()
    expect(page.get_by_role("main")).to_contain_text("Your account is waiting for approval by staff.")
    expect(page.get_by_role("button", name="Log out")).to_have_count(0)

    console = other_browser()
    staff_runs_user_action(console, username="penny", action="Approve selected users", log_in_as=staff)
    expect(console.locator(".messagelist .success")).to_contain_text("Approved 1 user")

    log_in(page, "penny", NEW_PASSWORD, path="/manage")
    expect(page).to_have_url(re.compile(r"/manage$"))
    expect(page.get_by_role("heading", name="Your scripts")).to_be_visible()
    expect(page.get_by_role("navigation").get_by_role("link", name="penny")).to_be_visible()
    log = ApprovalLog.objects.get(user__username="penny")
    assert (log.decision, log.decided_by) == (ApprovalLog.Decision.APPROVED, staff)


def test_a_buyer_rejected_by_staff_is_told_their_registration_was_not_approved(page, other_browser, staff):
    UserFactory(username="penny", password=NEW_PASSWORD, approval_status=User.ApprovalStatus.PENDING)

    console = other_browser(signed_in=staff)
    staff_runs_user_action(console, username="penny", action="Reject selected pending users…")
    expect(console.get_by_role("main")).to_contain_text(
        "These pending users will be rejected and deactivated."
    )
    console.get_by_label("Reason").fill("Chargeback on the order.")
    console.get_by_role("button", name="Reject and deactivate").click()
    expect(console.locator(".messagelist .success")).to_have_text("Rejected and deactivated 1 user.")

    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        log_in(page, "penny", NEW_PASSWORD)
    assert answer.value.status == 403
    expect(page.get_by_role("heading", name="Registration not approved")).to_be_visible()
    expect(page.get_by_role("main")).to_contain_text("not approved, so this account cannot log in")
    penny = User.objects.get(username="penny")
    assert (penny.approval_status, penny.is_active) == (User.ApprovalStatus.REJECTED, False)
    log = ApprovalLog.objects.get(user=penny)
    assert (log.decision, log.decided_by, log.reason) == (
        ApprovalLog.Decision.REJECTED,
        staff,
        "Chargeback on the order.",
    )


# ------------------------------------------------------------------------------------------ rate limiting


def test_repeated_wrong_passwords_end_in_the_too_many_attempts_page_even_for_the_right_password(
    page, settings, approved_user
):
    # A day-long window: three quick attempts never straddle a window boundary.
    settings.LOGIN_RATE_LIMIT = "3/86400"
    for attempt in range(3):
        log_in(page, "alice", f"wrong-password-{attempt}")
        expect(page.get_by_role("main")).to_contain_text(
            "That username and password do not match an account."
        )

    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        log_in(page, "alice", PASSWORD)

    assert answer.value.status == 429
    assert int(answer.value.headers["retry-after"]) > 0
    expect(page.get_by_role("heading", name="Too many attempts")).to_be_visible()
    expect(page.get_by_role("main")).to_contain_text(
        re.compile(r"too many failed login attempts .* Wait \d+ minutes? and try again\.")
    )
    expect(page.get_by_role("button", name="Log out")).to_have_count(0)


# ------------------------------------------------------------------------------------------------ logout


def test_logging_out_is_a_post_from_the_navigation_and_ends_the_session(page, approved_user):
    log_in(page, "alice", PASSWORD, path="/manage")
    expect(page).to_have_url(re.compile(r"/manage$"))

    # A plain link (GET) to /logout cannot sign anyone out.
    assert page.request.get("/logout").status == 405
    page.goto("/manage")
    expect(page).to_have_url(re.compile(r"/manage$"))

    page.get_by_role("navigation").get_by_role("button", name="Log out").click()

    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.get_by_role("alert")).to_contain_text("You have been logged out.")
    expect(page.get_by_role("navigation").get_by_role("link", name="Log in")).to_be_visible()
    page.goto("/manage")
    expect(page).to_have_url(re.compile(r"/login\?next=/manage$"))


# ------------------------------------------------------------------------------- regressions found here


def test_the_registration_page_checks_the_tradingview_username_as_it_is_typed(page, fake_tradingview):
    issued = services.access_keys_create(count=1)[0]
    enter_key(page, issued.raw_key)
    expect(page).to_have_url(re.compile(r"/register$"))
    # The check's script is deferred: type only once it is listening, as a person would after the page loads.
    page.wait_for_load_state("load")
    username_field = field(page, "TradingView username")
    # Fail at once rather than wait for a result that cannot appear.
    assert page.locator("input[data-tradingview-username-check]").count() == 1

    username_field.fill("alice_trades")
    username_field.blur()
    result = page.locator("[data-username-check-result]")
    expect(result).to_have_text("TradingView knows this user: Alice_Trades.")
    username_field.fill("Nobody_Here")
    username_field.blur()
    expect(result).to_contain_text('There is no TradingView user named "Nobody_Here".')


def test_the_approval_message_counts_the_users_it_approved_when_the_pending_filter_is_on(
    other_browser, staff
):
    UserFactory(username="penny", approval_status=User.ApprovalStatus.PENDING)

    console = other_browser(signed_in=staff)
    staff_runs_user_action(console, username="penny", action="Approve selected users")

    message = console.locator(".messagelist .success")
    expect(message).to_contain_text("Approved 1 user")
    assert message.inner_text().strip() == "Approved 1 user."
