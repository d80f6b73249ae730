"""The trading pages in a real browser: set-up, an alert becoming orders and a position, rejections, the kill
switch, ownership and phone widths.

Alerts are posted over HTTP to the live server, as TradingView does; the queued pipeline work then runs in
this process (there is no Celery worker in these tests), as trading.tests.execution_support does it.
"""

from __future__ import annotations

import json
import re
from contextlib import suppress
from decimal import Decimal

import pytest
import requests
from django.conf import settings
from django.test import Client
from playwright.sync_api import Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from rest_framework.authtoken.models import Token

from trading.brokers.paper import paper_account_id
from trading.models import BrokerAccount, Order, Recorder, Trader
from trading.tests.execution_support import TaskQueue, alert
from trading.tests.factories import BrokerAccountFactory, RecorderFactory, TraderFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser-pass-123"
# The ready-to-paste message of shared/specs/webhook.md, character for character.
SPEC_ALERT_MESSAGE = (
    '{"action": "{{strategy.order.action}}", "ticker": "{{ticker}}", '
    '"contracts": {{strategy.order.contracts}},\n'
    ' "price": {{close}}, "market_position": "{{strategy.market_position}}", '
    '"position_size": {{strategy.position_size}},\n'
    ' "id": "{{ticker}}-{{strategy.order.id}}-{{timenow}}", "time": "{{timenow}}"}'
)
# What TradingView puts in the placeholders when a long entry of 2 contracts fills at 5000.
FILLED_PLACEHOLDERS = {
    "{{strategy.order.action}}": "buy",
    "{{ticker}}": "ES1!",
    "{{strategy.order.contracts}}": "2",
    "{{close}}": "5000",
    "{{strategy.market_position}}": "long",
    "{{strategy.position_size}}": "2",
    "{{strategy.order.id}}": "Long",
    "{{timenow}}": "2026-03-02T15:30:00Z",
}
POLL_TIMEOUT_MS = 9_000  # the dashboard's live part refreshes every 5 seconds


@pytest.fixture(autouse=True)
def _webhook_defaults(settings) -> None:
    """The documented defaults: any source address, no proxies."""
    settings.WEBHOOK_ALLOWED_IPS = []
    settings.TRUSTED_PROXIES = []


def sign_in(page: Page, user, live_server) -> None:
    """Give the browser the user's session, as if they had logged in earlier."""
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])


def field(page: Page, label: str) -> Locator:
    """A form field by its label as shown, with or without the required-field asterisk."""
    return page.get_by_label(re.compile(rf"^\s*{re.escape(label)}\*?\s*$"))


def post_alert(url: str, body: bytes | str, *, content_type: str = "application/json") -> requests.Response:
    """POST an alert to a webhook URL the way TradingView does."""
    data = body.encode() if isinstance(body, str) else body
    return requests.post(url, data=data, headers={"Content-Type": content_type}, timeout=5)


def trading_setup(owner, *, name: str = "ES Trend") -> tuple[Recorder, BrokerAccount, Trader]:
    """A paper account and an ES recorder (2 contracts, targets 8 and 16 ticks, a 10-point stop) linked by a
    trader."""
    account = BrokerAccountFactory(owner=owner, name="Paper 50K")
    recorder = RecorderFactory(
        owner=owner,
        name=name,
        symbol="ES",
        initial_position_size=2,
        tp_targets=[{"value": 8, "trim": 1}, {"value": 16, "trim": None}],
        sl_enabled=True,
        sl_amount=Decimal(10),
        sl_units="points",
    )
    trader = TraderFactory(
        recorder=recorder, account=account, subaccounts=[(paper_account_id(account.pk), 1)]
    )
    return recorder, account, trader


# --- 1. setting up: account, recorder, trader -----------------------------------------------------------


def test_a_user_adds_a_paper_account_a_recorder_with_targets_and_a_trader_that_follows_it(page, live_server):
    user = UserFactory(username="olivia")
    user.set_password(PASSWORD)
    user.save()
    page.goto("/login")
    field(page, "Username").fill("olivia")
    field(page, "Password").fill(PASSWORD)
    page.get_by_role("main").get_by_role("button", name="Log in").click()
    expect(page.get_by_role("link", name="olivia")).to_be_visible()

    # A paper account: the Tradovate login fields stay out of the way.
    page.goto("/broker-accounts/")
    page.get_by_role("link", name="Add an account").first.click()
    expect(page.get_by_label("Paper")).to_be_checked()
    expect(page.locator("[data-tradovate-fields]")).to_be_hidden()
    field(page, "Name").fill("Paper 50K")
    page.get_by_role("button", name="Add account").click()
    expect(page).to_have_url(f"{live_server.url}/broker-accounts/")
    card = page.locator(".card", has=page.get_by_role("link", name="Paper 50K"))
    expect(card).to_contain_text("Paper")
    account = BrokerAccount.objects.get(owner=user)
    assert account.kind == BrokerAccount.Kind.PAPER
    expect(card).to_contain_text(paper_account_id(account.pk))

    # A recorder with two take-profit targets and a stop loss.
    page.goto("/recorders/new")
    field(page, "Name").fill("ES Trend")
    field(page, "Symbol").fill("ES")
    field(page, "Initial position size").fill("2")
    add_target = page.get_by_role("button", name="Add a target")
    add_target.click()
    add_target.click()
    page.locator("input[name=tp-0-value]").fill("8")
    page.locator("input[name=tp-0-trim]").fill("1")
    page.locator("input[name=tp-1-value]").fill("16")
    stop_fields = page.locator("[data-dim-when-off=id_sl_enabled]")
    expect(stop_fields).to_have_class(re.compile(r"\bdimmed\b"))
    field(page, "Stop loss").check()
    expect(stop_fields).not_to_have_class(re.compile(r"\bdimmed\b"))
    field(page, "Stop loss amount").fill("10")
    field(page, "Stop loss units").select_option("points")
    page.get_by_role("button", name="Create recorder").click()

    recorder = Recorder.objects.get(owner=user)
    expect(page).to_have_url(f"{live_server.url}/recorders/{recorder.pk}")
    assert [(t.number, t.value, t.trim) for t in recorder.targets.order_by("number")] == [
        (1, 8, 1),
        (2, 16, None),
    ]
    assert (recorder.symbol, recorder.initial_position_size, recorder.sl_enabled) == ("ES", 2, True)
    assert (recorder.sl_amount, recorder.sl_units) == (10, "points")

    # Its webhook URL and the alert message to paste into TradingView, each with a copy button.
    webhook_url = page.get_by_label("Webhook URL")
    expect(webhook_url).to_have_value(f"{live_server.url}/webhook/{recorder.webhook_token}")
    expect(page.locator('[data-copy-target="#webhook-url"]')).to_be_visible()
    message = page.get_by_label("Strategy alert message")
    expect(message).to_have_value(SPEC_ALERT_MESSAGE)
    filled = message.input_value()
    for placeholder, value in FILLED_PLACEHOLDERS.items():
        filled = filled.replace(placeholder, value)
    assert json.loads(filled) == {
        "action": "buy",
        "ticker": "ES1!",
        "contracts": 2,
        "price": 5000,
        "market_position": "long",
        "position_size": 2,
        "id": "ES1!-Long-2026-03-02T15:30:00Z",
        "time": "2026-03-02T15:30:00Z",
    }
    copy_message = page.locator('[data-copy-target="#alert-message-1"]')
    copy_message.click()
    expect(copy_message).to_have_text("Copied")
    page.context.grant_permissions(["clipboard-read"])  # only to read back what the click copied
    assert page.evaluate("navigator.clipboard.readText()") == SPEC_ALERT_MESSAGE

    # A trader: choosing the recorder fills in its settings; time-filter fields dim while their filter is off.
    page.goto("/traders/new")
    field(page, "Signal source").select_option(label="ES Trend (ES)")
    expect(page.locator("#id_sl_amount")).to_have_attribute("placeholder", "10")
    expect(page.locator("#id_initial_position_size")).to_have_attribute("placeholder", "2")
    expect(page.locator("#id_sl_enabled option").first).to_have_text("Recorder's (on)")
    expect(page.locator("[data-recorder-targets]")).to_have_text(
        "The recorder's targets: 8 ticks × 1, 16 ticks (the rest)."  # noqa: RUF001
    )
    window = page.locator("[data-dim-when-off=id_time_filter_1_enabled]")
    expect(window).to_have_count(2)
    for part in window.all():
        expect(part).to_have_class(re.compile(r"\bdimmed\b"))
    page.locator("#id_time_filter_1_enabled").select_option("true")
    for part in window.all():
        expect(part).not_to_have_class(re.compile(r"\bdimmed\b"))
    page.locator("#id_time_filter_1_enabled").select_option("unknown")
    for part in window.all():
        expect(part).to_have_class(re.compile(r"\bdimmed\b"))

    field(page, "Broker account").select_option(label="Paper 50K")
    subaccount = page.locator("[data-subaccount-row]:not([hidden])")
    expect(subaccount).to_have_count(1)
    subaccount.get_by_role("checkbox").check()
    page.get_by_role("button", name="Create trader").click()
    expect(page).to_have_url(f"{live_server.url}/traders/")
    expect(page.get_by_role("main")).to_contain_text("ES Trend")

    trader = Trader.objects.get()
    assert (trader.recorder_id, trader.account_id, trader.enabled) == (recorder.pk, account.pk, True)
    assert [link.subaccount.broker_id for link in trader.subaccount_links.all()] == [
        paper_account_id(account.pk)
    ]
    # Nothing was overridden: the recorder's settings apply and follow it.
    assert trader.sl_amount is None
    assert trader.initial_position_size is None
    assert trader.time_filter_1_enabled is None


# --- 2. an alert becomes orders and a position, shown on every page --------------------------------------


def test_a_buy_alert_shows_in_the_signal_log_positions_and_the_live_dashboard_until_a_target_fills(
    page, live_server, task_queue: TaskQueue
):
    owner = UserFactory(username="olivia")
    recorder, account, _ = trading_setup(owner)
    sign_in(page, owner, live_server)
    page.goto("/dashboard")
    live = page.locator("#dashboard-live")
    expect(live).to_contain_text("No signals today yet.")
    expect(live).to_contain_text("All accounts are flat.")

    body = alert("buy", id="ES1!-Long-1")
    answer = post_alert(f"{live_server.url}/webhook/{recorder.webhook_token}", body)
    assert answer.status_code == 200, answer.text
    signal_id = answer.json()["signal"]
    assert answer.json() == {"status": "accepted", "signal": signal_id}
    assert task_queue.names() == ["signal_process"]
    task_queue.run()

    # The signal log: what arrived and what became of it.
    page.goto("/signals/")
    row = page.locator("tbody tr", has=page.locator(f'a[href="/signals/{signal_id}"]'))
    expect(row).to_contain_text("ES Trend")
    expect(row).to_contain_text(re.compile(r"BUY\s+ES1!\s+@ 5000"))
    expect(row.locator(".badge")).to_have_text(["Processed", "Orders sent"])

    row.locator(f'a[href="/signals/{signal_id}"]').click()
    expect(page).to_have_url(f"{live_server.url}/signals/{signal_id}")
    expect(page.get_by_role("heading", name=f"Signal {signal_id}")).to_be_visible()
    expect(page.locator("pre code")).to_have_text(body.decode())
    decision = page.locator(".card", has=page.get_by_role("link", name="ES Trend on Paper 50K"))
    expect(decision.locator(".badge").first).to_have_text("Orders sent")
    # Why it traded: the paper sub-account opens 2 contracts from flat.
    expect(decision.locator("li")).to_have_text(re.compile(r"Paper:\s+open 2 \(position \+0 → \+2\)"))
    # Per target a bracket: a market entry of its share with its take-profit and its own stop.
    orders = decision.locator("tbody tr")
    expect(orders).to_have_count(6)
    for row, price in enumerate([5002, 5004]):
        entry, take_profit, stop = (orders.nth(3 * row + offset) for offset in range(3))
        expect(entry).to_contain_text(re.compile(r"Entry: Buy 1 market\s+market\s+Filled\s+1 @ 5000"))
        expect(take_profit).to_contain_text(re.compile(rf"Take profit: Sell 1 limit\s+{price}\s+Working"))
        expect(stop).to_contain_text(re.compile(r"Stop loss: Sell 1 stop\s+stop 4990\s+Working"))

    # The paper position.
    page.goto("/positions/")
    position = page.locator("tbody tr", has_text="Paper 50K").first
    expect(position).to_contain_text(re.compile(r"ES\s+\+2\s+5000"))

    # The dashboard shows it, and its live part refreshes by itself when a price fills the first target.
    page.goto("/dashboard")
    expect(live).to_have_attribute("hx-trigger", re.compile(r"every \d+s"))
    positions = live.locator(".card", has=page.get_by_role("heading", name="Account positions"))
    expect(positions.locator("tbody tr")).to_contain_text(re.compile(r"Paper 50K\s+ES\s+\+2\s+5000"))
    expect(live.locator(".card", has_text="Accounts' realized P&L today")).to_contain_text("$0.00")
    expect(live.locator(".card", has_text="Working orders").locator(".fs-3")).to_have_text("4")
    page.evaluate("window.notReloaded = true")

    token = Token.objects.create(user=owner).key
    priced = requests.post(
        f"{live_server.url}/api/prices/",
        json={"symbol": "ES", "price": "5002"},
        headers={"Authorization": f"Token {token}"},
        timeout=5,
    )
    assert priced.status_code == 201, priced.text
    assert priced.json()["filled_accounts"] == [account.pk]

    expect(positions.locator("tbody tr")).to_contain_text(
        re.compile(r"Paper 50K\s+ES\s+\+1\s+5000"), timeout=POLL_TIMEOUT_MS
    )
    expect(live.locator(".card", has_text="Accounts' realized P&L today")).to_contain_text("$100.00")
    expect(live.locator(".card", has_text="Working orders").locator(".fs-3")).to_have_text("2")
    assert page.evaluate("window.notReloaded") is True  # the region was swapped in place, not the page
    statuses = dict(Order.objects.filter(signal_id=signal_id).values_list("plan_key", "status").order_by())
    assert statuses == {
        "entry1": "filled",
        "tp1": "filled",
        "sl1": "cancelled",
        "entry2": "filled",
        "tp2": "working",
        "sl2": "working",
    }


# --- 3. a rejected alert ---------------------------------------------------------------------------------


def test_an_alert_that_cannot_be_read_is_in_the_signal_log_with_the_reason(page, live_server, task_queue):
    owner = UserFactory(username="olivia")
    recorder, _, _ = trading_setup(owner)
    sign_in(page, owner, live_server)

    answer = post_alert(
        f"{live_server.url}/webhook/{recorder.webhook_token}", "go long now please", content_type="text/plain"
    )
    assert answer.status_code == 400, answer.text
    rejected = answer.json()
    assert rejected["status"] == "rejected"
    assert rejected["error"]
    assert task_queue.messages == []  # nothing to trade

    page.goto("/signals/")
    field(page, "Status").select_option(label="Rejected")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"status=rejected"))
    row = page.locator("tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("unread")
    expect(row.locator(".badge").first).to_have_text("Rejected")
    shown = rejected["error"] if len(rejected["error"]) <= 120 else rejected["error"][:119] + "…"
    expect(row.locator("td").nth(4)).to_have_text(shown)

    row.get_by_role("link").first.click()
    expect(page).to_have_url(f"{live_server.url}/signals/{rejected['signal']}")
    expect(page.locator(".alert-warning")).to_have_text(rejected["error"])
    expect(page.locator("pre code")).to_have_text("go long now please")
    expect(page.get_by_role("main")).to_contain_text("Nothing could be read from this body.")
    assert Order.objects.count() == 0


# --- 4. the kill switch ----------------------------------------------------------------------------------


def test_the_kill_switch_on_the_positions_page_blocks_the_next_alert_and_resuming_trades_again(
    page, live_server, task_queue
):
    owner = UserFactory(username="olivia")
    recorder, _, _ = trading_setup(owner)
    webhook = f"{live_server.url}/webhook/{recorder.webhook_token}"
    sign_in(page, owner, live_server)
    page.goto("/positions/")
    switch = page.locator("#killswitch")
    expect(switch).to_contain_text(re.compile(r"All my trading:\s+running"))

    switch.get_by_role("button", name="Stop all my trading").click()
    expect(page).to_have_url(f"{live_server.url}/positions/")
    expect(page.get_by_role("alert")).to_contain_text("Kill switch on.")
    expect(switch).to_contain_text(re.compile(r"All my trading:\s+stopped"))

    blocked = post_alert(webhook, alert("buy", id="ES1!-Long-1")).json()["signal"]
    task_queue.run()
    page.goto("/signals/")
    row = page.locator("tbody tr", has=page.locator(f'a[href="/signals/{blocked}"]'))
    expect(row.locator(".badge").first).to_have_text("Blocked by the kill switch")
    page.goto(f"/signals/{blocked}")
    blocked_reason = "The owner's kill switch is on: the signal is stored and no order is sent."
    expect(page.locator(".badge").first).to_have_text("Blocked by the kill switch")
    expect(page.locator(".alert-warning")).to_have_text(blocked_reason)
    expect(page.get_by_role("main").locator("table")).to_have_count(0)  # no orders
    assert Order.objects.count() == 0

    page.goto("/positions/")
    switch.get_by_role("button", name="Resume").click()
    expect(page.get_by_role("alert")).to_contain_text("Kill switch off.")
    expect(switch).to_contain_text(re.compile(r"All my trading:\s+running"))
    traded = post_alert(webhook, alert("buy", id="ES1!-Long-2")).json()["signal"]
    task_queue.run()
    assert Order.objects.filter(signal_id=traded, role="entry", status="filled").count() == 2  # 2 targets
    assert Order.objects.filter(signal_id=blocked).count() == 0


# --- 5. ownership ----------------------------------------------------------------------------------------


def test_another_users_private_recorder_is_not_found_and_a_public_one_opens_read_only(page, live_server):
    viewer = UserFactory(username="olivia")
    private = RecorderFactory(owner=UserFactory(username="sam"), name="Sam's secret edge")
    public = RecorderFactory(
        owner=UserFactory(username="pat"),
        name="Pat's public trend",
        tp_targets=[{"value": 8, "trim": None}],
        is_private=False,
    )
    sign_in(page, viewer, live_server)

    response = page.goto(f"/recorders/{private.pk}")
    assert response.status == 404
    expect(page.locator("body")).not_to_contain_text("Sam's secret edge")
    assert private.webhook_token not in page.content()

    response = page.goto(f"/recorders/{public.pk}")
    assert response.status == 200
    expect(page.get_by_role("heading", level=1)).to_contain_text("public recorder by pat")
    expect(page.locator("dt:text-is('Take profit') + dd")).to_have_text("8 ticks")
    expect(page.get_by_role("link", name="Trade it on an account")).to_be_visible()
    # Read-only: no form to change it, no webhook URL, no token.
    main = page.get_by_role("main")
    expect(main.locator("form")).to_have_count(0)
    expect(main.locator("input, textarea, select")).to_have_count(0)
    expect(main).not_to_contain_text("/webhook/")
    assert public.webhook_token not in page.content()


def test_the_not_found_page_keeps_the_site_layout_and_a_way_back(page, live_server):
    private = RecorderFactory(owner=UserFactory(username="sam"), name="Sam's secret edge")
    sign_in(page, UserFactory(username="olivia"), live_server)

    response = page.goto(f"/recorders/{private.pk}")

    assert response.status == 404
    assert page.locator("html").get_attribute("data-bs-theme") == "dark"
    expect(
        page.get_by_role("navigation", name="Main navigation").get_by_role("link", name="Recorders")
    ).to_be_visible()


# --- 6. a phone ------------------------------------------------------------------------------------------


def assert_no_horizontal_overflow(page: Page) -> None:
    """The page body is no wider than the screen once laid out (a table may scroll inside its own box)."""
    fits = "document.documentElement.scrollWidth <= window.innerWidth"
    with suppress(PlaywrightTimeoutError):  # the assertion below says by how much
        page.wait_for_function(fits, timeout=2_000)  # lets a chart or late layout settle
    width, screen = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= screen, f"{page.url} is {width} px wide on a {screen} px screen."


# A label a strategy author puts in an alert instead of the expected message: one long word.
UNREADABLE_BODY = "LongEntry_ES1!_5m_OpeningRangeBreakout_v3_confirmed_by_volume_spike"


@pytest.fixture
def phone(page: Page, live_server, task_queue) -> Page:
    """Olivia on a 390 px wide phone, with two recorders, a public one of Pat's and three signals."""
    owner = UserFactory(username="olivia")
    recorder, _, _ = trading_setup(owner, name="Opening range breakout with trailing stop")
    RecorderFactory(owner=owner, name="Overnight mean reversion on the micro contract", symbol="MES")
    RecorderFactory(owner=UserFactory(username="pat"), name="Pat's public trend", is_private=False)
    webhook = f"{live_server.url}/webhook/{recorder.webhook_token}"
    accepted = post_alert(webhook, alert("buy", id="ES1!-Long-1", comment="first entry of the session"))
    post_alert(webhook, alert("buy", ticker="NQ1!", id="NQ-1"))  # another contract: a long reason
    post_alert(webhook, UNREADABLE_BODY, content_type="text/plain")
    task_queue.run()
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, owner, live_server)
    page.recorder = recorder
    page.accepted_signal = accepted.json()["signal"]
    return page


def test_the_recorder_list_and_the_signal_log_fit_a_phone_screen(phone, live_server):
    phone.goto("/recorders/")
    expect(phone.get_by_role("link", name="Opening range breakout with trailing stop")).to_be_visible()
    expect(phone.get_by_role("link", name="Pat's public trend")).to_be_visible()
    expect(phone.get_by_role("link", name="New recorder")).to_be_in_viewport()
    assert_no_horizontal_overflow(phone)
    phone.get_by_role("link", name="Opening range breakout with trailing stop").click()
    expect(phone).to_have_url(f"{live_server.url}/recorders/{phone.recorder.pk}")
    assert_no_horizontal_overflow(phone)

    phone.goto("/signals/")
    rows = phone.locator("tbody tr")
    expect(rows).to_have_count(3)
    expect(phone.get_by_role("button", name="Filter")).to_be_in_viewport()
    assert_no_horizontal_overflow(phone)
    # The table scrolls inside its own box: every row still opens.
    phone.locator(f'a[href="/signals/{phone.accepted_signal}"]').click()
    expect(phone.locator("pre code")).to_contain_text('"id": "ES1!-Long-1"')
    assert_no_horizontal_overflow(phone)


def test_a_rejected_signal_quoting_a_long_word_still_fits_a_phone_screen(phone):
    phone.goto("/signals/?status=rejected")
    phone.locator("tbody tr", has_text="LongEntry").get_by_role("link").first.click()
    expect(phone.locator(".alert-warning")).to_contain_text("Could not read the alert")
    assert_no_horizontal_overflow(phone)
