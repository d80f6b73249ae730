"""Pages: login and approval, ownership on every page, forms that save through the services, query bounds."""

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from trading.models import BrokerAccount, Recorder, Trader
from trading.services.broker_accounts import broker_account_mark_needs_attention
from trading.services.recorders import recorder_record_fill
from trading.tests.factories import (
    BrokerAccountFactory,
    RecorderFactory,
    TraderFactory,
    TradovateAccountFactory,
)

pytestmark = pytest.mark.django_db

LIST_PAGES = ["/dashboard", "/recorders/", "/traders/", "/broker-accounts/"]
FORM_PAGES = ["/recorders/new", "/traders/new", "/broker-accounts/new"]


def recorder_form(**overrides):
    """Return a complete recorder form submission with one take-profit target."""
    data = {
        "name": "Opening range",
        "strategy_type": "strategy",
        "symbol": "ES1!",
        "enabled": "on",
        "recording_enabled": "on",
        "is_private": "on",
        "max_signal_age": "60",
        "initial_position_size": "2",
        "add_position_size": "1",
        "tp_units": "ticks",
        "sl_amount": "0",
        "sl_units": "ticks",
        "sl_type": "fixed",
        "avg_down_amount": "0",
        "avg_down_point": "0",
        "avg_down_units": "ticks",
        "time_filter_1_start": "",
        "time_filter_1_stop": "",
        "time_filter_2_start": "",
        "time_filter_2_stop": "",
        "timezone": "America/Chicago",
        "direction_filter": "both",
        "signal_cooldown": "0",
        "max_signals_per_session": "0",
        "max_daily_loss": "0",
        "max_contracts_per_trade": "0",
        "signal_delay_nth": "1",
        "tp-TOTAL_FORMS": "1",
        "tp-INITIAL_FORMS": "0",
        "tp-MIN_NUM_FORMS": "0",
        "tp-MAX_NUM_FORMS": "10",
        "tp-0-value": "8",
        "tp-0-trim": "1",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def trader_form(recorder, account, **overrides):
    data = {
        "recorder": str(recorder.pk),
        "account": str(account.pk),
        "enabled": "on",
        "tp-TOTAL_FORMS": "0",
        "tp-INITIAL_FORMS": "0",
        "tp-MIN_NUM_FORMS": "0",
        "tp-MAX_NUM_FORMS": "10",
    }
    for sub in account.subaccounts.all():
        data[f"sub_{sub.pk}"] = "on"
        data[f"mult_{sub.pk}"] = "1"
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


# --- who may see the pages ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", LIST_PAGES + FORM_PAGES)
def test_pages_send_anonymous_visitors_to_the_login_page(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login")


@pytest.mark.parametrize("path", LIST_PAGES + FORM_PAGES)
def test_pages_wait_for_approval(client, pending_user, path):
    client.force_login(pending_user)
    assert client.get(path).status_code == 403


@pytest.mark.parametrize("path", LIST_PAGES + FORM_PAGES)
def test_pages_render_for_an_approved_user_with_nothing_yet(owner_client, path):
    assert owner_client.get(path).status_code == 200


# --- recorders ----------------------------------------------------------------------------------------------


def test_creating_a_recorder_leads_to_its_webhook_url_and_alert_message(owner_client, owner):
    response = owner_client.post("/recorders/new", recorder_form())
    recorder = Recorder.objects.get(owner=owner)
    assert response.status_code == 302
    assert response["Location"] == f"/recorders/{recorder.pk}"
    assert [(t.value, t.trim) for t in recorder.targets.all()] == [(8, 1)]
    page = owner_client.get(response["Location"]).content.decode()
    assert f"http://testserver/webhook/{recorder.webhook_token}" in page
    assert "{{strategy.order.action}}" in page
    assert "/static/vendor/chartjs/chart.umd.min.js" in page
    assert "cdn" not in page.lower()


def test_a_recorder_form_with_a_bad_symbol_shows_the_reason_and_saves_nothing(owner_client):
    response = owner_client.post("/recorders/new", recorder_form(symbol="AAPL"))
    assert response.status_code == 200
    assert "not a supported contract" in response.content.decode()
    assert not Recorder.objects.exists()


def test_a_time_filter_switched_on_without_times_is_explained_on_the_form(owner_client):
    response = owner_client.post("/recorders/new", recorder_form(time_filter_1_enabled="on"))
    assert "Time filter 1 is on: give it a start time." in response.content.decode()
    assert not Recorder.objects.exists()


def test_the_owner_edits_a_recorder_and_its_targets(owner_client, owner):
    recorder = RecorderFactory(owner=owner, name="Old", tp_targets=[{"value": 8, "trim": 1}])
    data = recorder_form(
        name="New name",
        is_private=None,
        **{
            "tp-TOTAL_FORMS": "2",
            "tp-INITIAL_FORMS": "1",
            "tp-0-DELETE": "on",
            "tp-1-value": "12.5",
            "tp-1-trim": "",
        },
    )
    response = owner_client.post(f"/recorders/{recorder.pk}", data)
    assert response.status_code == 302
    recorder.refresh_from_db()
    assert recorder.name == "New name"
    assert not recorder.is_private
    assert [(t.value, t.trim) for t in recorder.targets.all()] == [(12.5, None)]


def test_someone_elses_private_recorder_does_not_exist_for_you(stranger_client):
    recorder = RecorderFactory()
    for path in (f"/recorders/{recorder.pk}", f"/traders/new?recorder={recorder.pk}"):
        response = stranger_client.get(path)
        assert recorder.webhook_token not in response.content.decode()
    assert stranger_client.get(f"/recorders/{recorder.pk}").status_code == 404
    for action in ("", "/token", "/reset", "/delete"):
        assert stranger_client.post(f"/recorders/{recorder.pk}{action}", recorder_form()).status_code == 404
    assert Recorder.objects.get(pk=recorder.pk).webhook_token == recorder.webhook_token


def test_a_public_recorder_of_someone_else_is_read_only(stranger_client):
    recorder = RecorderFactory(is_private=False, name="Shared trend")
    response = stranger_client.get(f"/recorders/{recorder.pk}")
    page = response.content.decode()
    assert response.status_code == 200
    assert "Shared trend" in page
    assert recorder.webhook_token not in page
    assert "webhook" not in page.lower()
    for action in ("", "/token", "/reset", "/delete"):
        assert stranger_client.post(f"/recorders/{recorder.pk}{action}", recorder_form()).status_code == 404
    assert Recorder.objects.get(pk=recorder.pk).name == "Shared trend"


def test_regenerating_the_token_changes_the_url_on_the_page(owner_client, owner):
    recorder = RecorderFactory(owner=owner)
    old = recorder.webhook_token
    response = owner_client.post(f"/recorders/{recorder.pk}/token", follow=True)
    page = response.content.decode()
    assert old not in page
    assert Recorder.objects.get(pk=recorder.pk).webhook_token in page


def test_the_owner_deletes_a_recorder(owner_client, owner):
    recorder = RecorderFactory(owner=owner)
    assert owner_client.post(f"/recorders/{recorder.pk}/delete").status_code == 302
    assert not Recorder.objects.filter(pk=recorder.pk).exists()


def test_state_changing_recorder_actions_refuse_get(owner_client, owner):
    recorder = RecorderFactory(owner=owner)
    for action in ("/token", "/reset", "/delete"):
        assert owner_client.get(f"/recorders/{recorder.pk}{action}").status_code == 405


def test_the_recorder_list_shows_own_and_public_recorders_in_bounded_queries(
    owner_client, owner, django_assert_max_num_queries
):
    at = datetime.now(UTC)
    for number in range(6):
        recorder = RecorderFactory(owner=owner, name=f"Mine {number}")
        recorder_record_fill(recorder=recorder, action="buy", quantity=1, price=5000, at=at)
        TraderFactory(recorder=recorder)
    RecorderFactory(is_private=False, name="Somebody's public")
    RecorderFactory(name="Somebody's private")
    with django_assert_max_num_queries(9):
        response = owner_client.get("/recorders/")
    page = response.content.decode()
    assert "Mine 5" in page
    assert "Somebody&#x27;s public" in page
    assert "Somebody&#x27;s private" not in page


def test_the_recorder_page_shows_performance_in_bounded_queries(
    owner_client, owner, django_assert_max_num_queries
):
    recorder = RecorderFactory(owner=owner)
    at = datetime.now(UTC)
    for _ in range(10):
        recorder_record_fill(recorder=recorder, action="buy", quantity=1, price=5000, at=at)
        recorder_record_fill(recorder=recorder, action="sell", quantity=1, price=5001, at=at)
    with django_assert_max_num_queries(12):
        response = owner_client.get(f"/recorders/{recorder.pk}")
    assert 'id="equity-data"' in response.content.decode()


# --- traders ------------------------------------------------------------------------------------------------


def test_the_trader_form_offers_own_and_public_recorders_with_their_settings(owner_client, owner):
    own = RecorderFactory(owner=owner, name="Own source", initial_position_size=3)
    public = RecorderFactory(is_private=False, name="Public source")
    private = RecorderFactory(name="Hidden source")
    page = owner_client.get("/traders/new").content.decode()
    assert "Own source" in page
    assert "Public source" in page
    assert "Hidden source" not in page
    assert 'id="recorder-settings"' in page
    assert f'"{own.pk}": {{' in page
    assert f'"{public.pk}": {{' in page
    assert f'"{private.pk}"' not in page


def test_creating_a_trader_links_the_chosen_sub_accounts_with_multipliers(owner_client, owner):
    recorder = RecorderFactory(owner=owner)
    account = BrokerAccountFactory(owner=owner)
    sub = account.subaccounts.get()
    data = trader_form(recorder, account, **{f"mult_{sub.pk}": "3", "initial_position_size": "2"})
    response = owner_client.post("/traders/new", data)
    assert response.status_code == 302
    trader = Trader.objects.get()
    assert trader.initial_position_size == 2
    assert trader.sl_enabled is None
    assert trader.tp_units == ""
    assert [(link.subaccount_id, link.multiplier) for link in trader.subaccount_links.all()] == [(sub.pk, 3)]


def test_a_trader_without_a_sub_account_is_explained(owner_client, owner):
    recorder = RecorderFactory(owner=owner)
    account = BrokerAccountFactory(owner=owner)
    data = trader_form(recorder, account, **{f"sub_{account.subaccounts.get().pk}": None})
    response = owner_client.post("/traders/new", data)
    assert "Choose at least one sub-account" in response.content.decode()
    assert not Trader.objects.exists()


def test_a_trader_cannot_be_pointed_at_someone_elses_account_or_private_recorder(owner_client, owner):
    recorder = RecorderFactory(owner=owner)
    foreign_account = BrokerAccountFactory()
    response = owner_client.post("/traders/new", trader_form(recorder, foreign_account))
    assert response.status_code == 200
    assert not Trader.objects.exists()
    private = RecorderFactory()
    response = owner_client.post("/traders/new", trader_form(private, BrokerAccountFactory(owner=owner)))
    assert response.status_code == 200
    assert not Trader.objects.exists()


def test_someone_elses_trader_does_not_exist_for_you(stranger_client):
    trader = TraderFactory()
    assert stranger_client.get(f"/traders/{trader.pk}").status_code == 404
    assert stranger_client.post(f"/traders/{trader.pk}", {}).status_code == 404
    assert stranger_client.post(f"/traders/{trader.pk}/delete").status_code == 404
    assert Trader.objects.filter(pk=trader.pk).exists()


def test_the_owner_edits_and_deletes_a_trader(owner_client, owner):
    trader = TraderFactory(recorder=RecorderFactory(owner=owner))
    data = trader_form(trader.recorder, trader.account, enabled=None, direction_filter="long")
    assert owner_client.post(f"/traders/{trader.pk}", data).status_code == 302
    trader.refresh_from_db()
    assert not trader.enabled
    assert trader.direction_filter == "long"
    assert owner_client.get(f"/traders/{trader.pk}").status_code == 200
    assert owner_client.post(f"/traders/{trader.pk}/delete").status_code == 302
    assert not Trader.objects.exists()


def test_the_trader_list_stays_within_its_query_budget(owner_client, owner, django_assert_max_num_queries):
    for _ in range(6):
        TraderFactory(recorder=RecorderFactory(is_private=False), account=BrokerAccountFactory(owner=owner))
    with django_assert_max_num_queries(9):  # 3 of them save the session
        response = owner_client.get("/traders/")
    assert response.content.decode().count("\u00d71") == 6


# --- broker accounts ----------------------------------------------------------------------------------------


def test_adding_a_paper_account(owner_client, owner):
    response = owner_client.post(
        "/broker-accounts/new", {"name": "Paper", "kind": "paper", "username": "typed"}
    )
    assert response.status_code == 302
    account = BrokerAccount.objects.get(owner=owner)
    assert account.is_paper
    assert account.username == ""
    assert account.subaccounts.count() == 1


def test_a_tradovate_password_is_never_shown_back(owner_client, owner):
    response = owner_client.post(
        "/broker-accounts/new",
        {"name": "Live", "kind": "tradovate", "username": "me@example.com", "password": "p4ss-w0rd-secret"},
    )
    assert response.status_code == 302
    account = BrokerAccount.objects.get(owner=owner)
    assert account.password == "p4ss-w0rd-secret"
    for path in ("/broker-accounts/", f"/broker-accounts/{account.pk}", "/dashboard", "/traders/new"):
        assert "p4ss-w0rd-secret" not in owner_client.get(path).content.decode()


def test_a_broken_account_form_does_not_echo_the_password(owner_client):
    response = owner_client.post(
        "/broker-accounts/new", {"name": "", "kind": "tradovate", "username": "me", "password": "echo-me-not"}
    )
    assert response.status_code == 200
    assert "echo-me-not" not in response.content.decode()


def test_editing_an_account_keeps_the_password_when_left_empty(owner_client, owner):
    account = TradovateAccountFactory(owner=owner, password="kept-secret")
    response = owner_client.post(
        f"/broker-accounts/{account.pk}", {"name": "Renamed", "username": account.username, "password": ""}
    )
    assert response.status_code == 302
    account.refresh_from_db()
    assert (account.name, account.password, account.is_demo) == ("Renamed", "kept-secret", False)


def test_someone_elses_account_does_not_exist_for_you(stranger_client):
    account = BrokerAccountFactory()
    assert stranger_client.get(f"/broker-accounts/{account.pk}").status_code == 404
    assert stranger_client.post(f"/broker-accounts/{account.pk}", {"name": "x"}).status_code == 404
    assert stranger_client.post(f"/broker-accounts/{account.pk}/delete").status_code == 404
    assert BrokerAccount.objects.filter(pk=account.pk).exists()


def test_the_account_list_stays_within_its_query_budget(owner_client, owner, django_assert_max_num_queries):
    for _ in range(6):
        BrokerAccountFactory(owner=owner)
    with django_assert_max_num_queries(9):
        response = owner_client.get("/broker-accounts/")
    assert response.content.decode().count("Paper (simulated)") == 6


def test_an_account_that_needs_attention_says_why_on_the_dashboard(owner_client, owner):
    account = TradovateAccountFactory(owner=owner, name="Apex")
    broker_account_mark_needs_attention(
        account=account, reason="captcha", message="Tradovate asked for a captcha: connect through OAuth."
    )
    page = owner_client.get("/dashboard").content.decode()
    assert "Apex" in page
    assert "connect through OAuth" in page


# --- dashboard ----------------------------------------------------------------------------------------------


def test_the_dashboard_shows_todays_pnl_and_open_positions_in_bounded_queries(
    owner_client, owner, django_assert_max_num_queries
):
    at = datetime.now(UTC)
    for number in range(5):
        recorder = RecorderFactory(owner=owner, name=f"R{number}")
        recorder_record_fill(recorder=recorder, action="buy", quantity=1, price=5000, at=at)
        recorder_record_fill(recorder=recorder, action="sell", quantity=1, price=5002, at=at)
    recorder_record_fill(
        recorder=Recorder.objects.get(name="R0"), action="buy", quantity=2, price=5001, at=at
    )
    with django_assert_max_num_queries(8):
        response = owner_client.get(reverse("dashboard"))
    page = response.content.decode()
    assert "$500.00" in page  # 5 recorders x 2 points x $50
    assert "+2 @ 5001" in page
    assert 'id="daily-pnl-data"' in page


# --- operator console ---------------------------------------------------------------------------------------


def test_the_admin_shows_whether_secrets_are_set_never_the_secrets(client, staff):
    account = TradovateAccountFactory(password="admin-must-not-see")
    BrokerAccount.objects.filter(pk=account.pk).update(access_token="token-must-not-show")
    recorder = RecorderFactory()
    client.force_login(staff)
    page = client.get(f"/admin/trading/brokeraccount/{account.pk}/change/").content.decode()
    assert "admin-must-not-see" not in page
    assert "token-must-not-show" not in page
    assert account.username not in page
    assert "not set" in page  # the OAuth token
    page = client.get(f"/admin/trading/recorder/{recorder.pk}/change/").content.decode()
    assert recorder.webhook_token not in page
    assert recorder.webhook_token_hash not in page
    for path in ("/admin/trading/brokeraccount/", "/admin/trading/recorder/", "/admin/trading/trader/"):
        assert client.get(path).status_code == 200


def test_the_admin_regenerates_a_webhook_token_through_the_service(client, staff):
    recorder = RecorderFactory()
    client.force_login(staff)
    client.post(
        "/admin/trading/recorder/",
        {"action": "regenerate_webhook_token", "_selected_action": [recorder.pk]},
    )
    assert Recorder.objects.get(pk=recorder.pk).webhook_token != recorder.webhook_token


def test_account_forms_hide_the_password_from_error_reports(rf, owner):
    from contextlib import suppress

    from django.http import Http404

    from trading.views import broker_accounts

    for view, kwargs in (
        (broker_accounts.broker_account_create, {}),
        (broker_accounts.broker_account_detail, {"pk": 0}),
    ):
        request = rf.post("/broker-accounts/new", {"name": "x", "password": "hidden"})
        request.user = owner
        with suppress(Http404):
            view(request, **kwargs)
        assert request.sensitive_post_parameters == ("password",)


# --- in a real browser --------------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_trader_form_fills_in_the_source_settings_and_dims_switched_off_filters(page, django_user_model):
    user = django_user_model.objects.create_user(
        "browser", password="browser-pass-123", approval_status="approved"
    )
    own = RecorderFactory(owner=user, name="Own", sl_enabled=True, sl_amount=12)
    public = RecorderFactory(
        is_private=False,
        name="Shared",
        time_filter_1_enabled=True,
        time_filter_1_start="08:30",
        time_filter_1_stop="15:00",
        tp_targets=[{"value": 8, "trim": 1}],
    )
    TradovateAccountFactory(owner=user, name="Apex")
    paper = BrokerAccountFactory(owner=user, name="Paper")
    page.goto("/login")
    page.fill("input[name=username]", "browser")
    page.fill("input[name=password]", "browser-pass-123")
    page.click("button[type=submit]")
    page.goto("/traders/new")

    page.select_option("select[name=recorder]", str(own.pk))
    assert page.get_attribute("#id_sl_amount", "placeholder") == "12"
    assert page.eval_on_selector("#id_sl_enabled", "s => s.options[0].textContent") == "Recorder's (on)"
    window = "[data-dim-when-off=id_time_filter_1_enabled]"
    assert page.eval_on_selector(window, "e => e.classList.contains('dimmed')")

    page.select_option("select[name=recorder]", str(public.pk))
    assert not page.eval_on_selector(window, "e => e.classList.contains('dimmed')")
    assert "08:30" in page.inner_text("#id_time_filter_1_start_helptext")
    assert "8 ticks" in page.inner_text("[data-recorder-targets]")
    page.select_option("#id_time_filter_1_enabled", "false")
    assert page.eval_on_selector(window, "e => e.classList.contains('dimmed')")

    page.select_option("select[name=account]", str(paper.pk))
    assert page.eval_on_selector_all("[data-subaccount-row]:not([hidden])", "rows => rows.length") == 1
    page.check("[data-subaccount-row]:not([hidden]) input[type=checkbox]")
    page.click("button:has-text('Create trader')")
    page.wait_for_url("**/traders/")
    trader = Trader.objects.get()
    assert trader.recorder_id == public.pk
    assert trader.time_filter_1_enabled is False
    assert trader.sl_amount is None


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_recorder_page_adds_targets_dims_filters_and_draws_its_chart_offline(page, django_user_model):
    user = django_user_model.objects.create_user(
        "charts", password="browser-pass-123", approval_status="approved"
    )
    recorder = RecorderFactory(owner=user, tp_targets=[{"value": 8, "trim": 1}])
    at = datetime.now(UTC)
    recorder_record_fill(recorder=recorder, action="buy", quantity=1, price=5000, at=at)
    recorder_record_fill(recorder=recorder, action="sell", quantity=1, price=5004, at=at)
    page.goto("/login")
    page.fill("input[name=username]", "charts")
    page.fill("input[name=password]", "browser-pass-123")
    page.click("button[type=submit]")
    page.goto(f"/recorders/{recorder.pk}")

    assert page.evaluate("typeof window.Chart") == "function"  # the vendored file, from this server
    assert page.eval_on_selector("canvas[data-chart]", "c => c.width > 0")
    window = "[data-dim-when-off=id_time_filter_2_enabled]"
    assert page.eval_on_selector(window, "e => e.classList.contains('dimmed')")
    page.check("#id_time_filter_2_enabled")
    assert not page.eval_on_selector(window, "e => e.classList.contains('dimmed')")
    page.uncheck("#id_time_filter_2_enabled")

    page.click("[data-formset-add]")
    page.fill("input[name=tp-1-value]", "16")
    page.click("[data-formset-row] >> nth=0 >> [data-formset-remove]")
    page.click("button:has-text('Save recorder')")
    page.wait_for_url(f"**/recorders/{recorder.pk}")
    assert [(t.number, t.value, t.trim) for t in Recorder.objects.get(pk=recorder.pk).targets.all()] == [
        (1, 16, None)
    ]
