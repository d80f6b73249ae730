"""The JSON API: names of shared/specs/interfaces.md, owner scoping, secrets that never come back."""

import json

import pytest
from rest_framework.test import APIClient

from trading.brokers.base import SubAccount
from trading.models import BrokerAccount, Recorder, Trader
from trading.services.broker_accounts import broker_account_sync_subaccounts
from trading.tests.factories import (
    BrokerAccountFactory,
    RecorderFactory,
    TraderFactory,
    TradovateAccountFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

RECORDER_FIELDS = {
    "name",
    "symbol",
    "initial_position_size",
    "add_position_size",
    "tp_units",
    "tp_targets",
    "sl_enabled",
    "sl_amount",
    "sl_units",
    "sl_type",
    "avg_down_enabled",
    "avg_down_amount",
    "avg_down_point",
    "avg_down_units",
    "time_filter_1_enabled",
    "time_filter_1_start",
    "time_filter_1_stop",
    "time_filter_2_enabled",
    "time_filter_2_start",
    "time_filter_2_stop",
    "direction_filter",
    "signal_cooldown",
    "max_signals_per_session",
    "max_daily_loss",
    "max_contracts_per_trade",
    "signal_delay_nth",
    "auto_flat_after_cutoff",
    "recording_enabled",
    "is_private",
    "webhook_url",
    "webhook_token",
}


# --- authentication -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/broker-accounts/", "/api/recorders/", "/api/traders/"])
def test_the_api_needs_a_token_or_a_session_of_an_approved_user(path, pending_user, owner):
    assert APIClient().get(path).status_code == 401
    pending = APIClient()
    pending.force_authenticate(pending_user)
    assert pending.get(path).status_code == 403
    session = APIClient()
    session.force_login(owner)
    assert session.get(path).status_code == 200


@pytest.mark.parametrize("path", ["/api/broker-accounts/", "/api/recorders/", "/api/traders/"])
def test_lists_are_paginated(owner_api, path):
    assert set(owner_api.get(path).json()) == {"count", "next", "previous", "results"}


# --- broker accounts ----------------------------------------------------------------------------------------


def test_creating_a_tradovate_account_never_returns_its_password(owner_api):
    response = owner_api.post(
        "/api/broker-accounts/",
        {
            "name": "Apex",
            "kind": "tradovate",
            "is_demo": True,
            "username": "apex-user",
            "password": "s3cret-pw!",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert "password" not in body
    assert "s3cret-pw!" not in response.content.decode()
    assert body["username"] == "apex-user"
    assert body["has_password"] is True
    assert body["kind"] == "tradovate"
    assert body["is_demo"] is True
    detail = owner_api.get(f"/api/broker-accounts/{body['id']}/").content.decode()
    assert "s3cret-pw!" not in detail
    assert BrokerAccount.objects.get(pk=body["id"]).password == "s3cret-pw!"


def test_tokens_are_never_returned(owner_api, owner):
    account = TradovateAccountFactory(owner=owner)
    BrokerAccount.objects.filter(pk=account.pk).update(
        access_token="live-access-token", oauth_token="oauth-tok"
    )
    content = owner_api.get(f"/api/broker-accounts/{account.pk}/").content.decode()
    assert "live-access-token" not in content
    assert "oauth-tok" not in content
    assert json.loads(content)["connected"] is True


def test_a_paper_account_comes_with_its_sub_account(owner_api):
    response = owner_api.post("/api/broker-accounts/", {"name": "Paper"}, format="json")
    body = response.json()
    assert response.status_code == 201
    assert body["kind"] == "paper"
    assert [sub["name"] for sub in body["subaccounts"]] == ["Paper"]


def test_account_errors_are_explained(owner_api, owner):
    BrokerAccountFactory(owner=owner, name="Taken")
    response = owner_api.post("/api/broker-accounts/", {"name": "Taken"}, format="json")
    assert response.status_code == 400
    assert "already have a broker account" in response.content.decode()
    response = owner_api.post(
        "/api/broker-accounts/", {"name": "P", "kind": "paper", "is_demo": False}, format="json"
    )
    assert response.json() == {"is_demo": ["A paper account is simulated: it cannot be live."]}


def test_the_kind_of_an_account_cannot_change(owner_api, owner):
    account = BrokerAccountFactory(owner=owner)
    response = owner_api.patch(f"/api/broker-accounts/{account.pk}/", {"kind": "tradovate"}, format="json")
    assert response.status_code == 400
    assert "cannot change" in response.json()["kind"][0]


def test_patching_the_password_stores_it_without_returning_it(owner_api, owner):
    account = TradovateAccountFactory(owner=owner)
    response = owner_api.patch(
        f"/api/broker-accounts/{account.pk}/", {"password": "rotated-pw"}, format="json"
    )
    assert response.status_code == 200
    assert "rotated-pw" not in response.content.decode()
    assert BrokerAccount.objects.get(pk=account.pk).password == "rotated-pw"


def test_someone_elses_broker_account_is_a_404(stranger_api):
    account = BrokerAccountFactory()
    path = f"/api/broker-accounts/{account.pk}/"
    assert stranger_api.get(path).status_code == 404
    assert stranger_api.patch(path, {"name": "mine"}, format="json").status_code == 404
    assert stranger_api.delete(path).status_code == 404
    assert stranger_api.get("/api/broker-accounts/").json()["count"] == 0
    assert BrokerAccount.objects.get(pk=account.pk).name == account.name


# --- recorders ----------------------------------------------------------------------------------------------


def test_a_recorder_round_trips_with_the_interface_names(owner_api):
    payload = {
        "name": "Breakout",
        "symbol": "NQ1!",
        "initial_position_size": 2,
        "tp_units": "points",
        "tp_targets": [{"value": 8, "trim": 1}, {"value": 12.5, "trim": None}],
        "sl_enabled": True,
        "sl_amount": 300,
        "sl_units": "dollars",
        "time_filter_1_enabled": True,
        "time_filter_1_start": "08:30",
        "time_filter_1_stop": "15:00",
        "max_daily_loss": 1000,
        "is_private": False,
    }
    response = owner_api.post("/api/recorders/", payload, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) >= RECORDER_FIELDS
    assert body["tp_targets"] == [{"value": 8, "trim": 1}, {"value": 12.5, "trim": None}]
    assert body["sl_amount"] == 300
    assert body["time_filter_1_start"] == "08:30:00"
    recorder = Recorder.objects.get(pk=body["id"])
    assert body["webhook_token"] == recorder.webhook_token
    assert body["webhook_url"] == f"http://testserver/webhook/{recorder.webhook_token}"


def test_recorder_errors_name_the_field(owner_api):
    response = owner_api.post("/api/recorders/", {"name": "X", "symbol": "AAPL"}, format="json")
    assert response.status_code == 400
    assert "not a supported contract" in response.json()["symbol"][0]
    response = owner_api.post(
        "/api/recorders/", {"name": "X", "symbol": "ES", "tp_targets": [{"value": 0}]}, format="json"
    )
    assert response.status_code == 400
    assert "tp_targets" in response.json()


def test_patching_a_recorder_keeps_targets_unless_they_are_sent(owner_api, owner):
    recorder = RecorderFactory(owner=owner, tp_targets=[{"value": 8, "trim": 1}])
    response = owner_api.patch(f"/api/recorders/{recorder.pk}/", {"signal_cooldown": 30}, format="json")
    assert response.json()["tp_targets"] == [{"value": 8, "trim": 1}]
    response = owner_api.patch(f"/api/recorders/{recorder.pk}/", {"tp_targets": []}, format="json")
    assert response.json()["tp_targets"] == []
    assert Recorder.objects.get(pk=recorder.pk).signal_cooldown == 30


def test_public_recorders_of_others_are_listed_read_only_without_their_webhook(stranger_api):
    public = RecorderFactory(is_private=False)
    private = RecorderFactory()
    listed = stranger_api.get("/api/recorders/").json()["results"]
    assert [item["id"] for item in listed] == [public.pk]
    assert "webhook_token" not in listed[0]
    assert "webhook_url" not in listed[0]
    assert listed[0]["is_owner"] is False
    assert public.webhook_token not in stranger_api.get(f"/api/recorders/{public.pk}/").content.decode()
    assert stranger_api.get("/api/recorders/?mine=true").json()["count"] == 0
    for recorder in (public, private):
        path = f"/api/recorders/{recorder.pk}/"
        assert stranger_api.patch(path, {"name": "taken over"}, format="json").status_code == 404
        assert stranger_api.delete(path).status_code == 404
        assert stranger_api.post(f"{path}regenerate-token/").status_code == 404
    assert stranger_api.get(f"/api/recorders/{private.pk}/").status_code == 404
    assert Recorder.objects.count() == 2


def test_the_owner_regenerates_the_webhook_token(owner_api, owner):
    recorder = RecorderFactory(owner=owner)
    response = owner_api.post(f"/api/recorders/{recorder.pk}/regenerate-token/")
    assert response.status_code == 200
    assert response.json()["webhook_token"] != recorder.webhook_token
    assert response.json()["webhook_token"] == Recorder.objects.get(pk=recorder.pk).webhook_token


def test_the_recorder_list_has_a_query_budget(owner_api, owner, django_assert_max_num_queries):
    for _ in range(8):
        RecorderFactory(owner=owner, tp_targets=[{"value": 4}])
    with django_assert_max_num_queries(5):
        assert owner_api.get("/api/recorders/").json()["count"] == 8


# --- traders ------------------------------------------------------------------------------------------------


def test_a_trader_is_created_with_sub_accounts_by_broker_id(owner_api, owner):
    recorder = RecorderFactory(owner=owner)
    account = TradovateAccountFactory(owner=owner)
    broker_account_sync_subaccounts(
        account=account, subaccounts=[SubAccount("501", "DEMO501", True), SubAccount("502", "DEMO502", True)]
    )
    payload = {
        "recorder": recorder.pk,
        "account": account.pk,
        "subaccounts": [{"id": "501", "multiplier": 2}, {"id": "502"}],
        "initial_position_size": 3,
    }
    response = owner_api.post("/api/traders/", payload, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert sorted(body["subaccounts"], key=lambda s: s["id"]) == [
        {"id": "501", "name": "DEMO501", "multiplier": 2},
        {"id": "502", "name": "DEMO502", "multiplier": 1},
    ]
    assert body["enabled"] is True
    assert body["initial_position_size"] == 3
    assert body["sl_enabled"] is None
    assert body["sl_units"] is None
    assert body["tp_targets"] is None


def test_trader_overrides_and_targets_can_be_set_and_cleared(owner_api, owner):
    trader = TraderFactory(recorder=RecorderFactory(owner=owner))
    path = f"/api/traders/{trader.pk}/"
    body = owner_api.patch(
        path, {"tp_targets": [{"value": 6, "trim": 1}], "sl_units": "points"}, format="json"
    ).json()
    assert body["tp_targets"] == [{"value": 6, "trim": 1}]
    assert body["sl_units"] == "points"
    body = owner_api.patch(path, {"tp_targets": None, "sl_units": None}, format="json").json()
    assert body["tp_targets"] is None
    assert body["sl_units"] is None
    assert Trader.objects.get(pk=trader.pk).sl_units == ""


def test_a_trader_cannot_use_a_private_recorder_or_an_account_of_someone_else(owner_api, owner):
    own_account = BrokerAccountFactory(owner=owner)
    private = RecorderFactory()
    response = owner_api.post(
        "/api/traders/", {"recorder": private.pk, "account": own_account.pk}, format="json"
    )
    assert response.status_code == 400
    assert "recorder" in response.json()
    foreign = BrokerAccountFactory()
    own_recorder = RecorderFactory(owner=owner)
    response = owner_api.post(
        "/api/traders/", {"recorder": own_recorder.pk, "account": foreign.pk}, format="json"
    )
    assert response.status_code == 400
    assert "account" in response.json()
    assert not Trader.objects.exists()


def test_a_trader_on_an_unknown_sub_account_is_refused(owner_api, owner):
    account = BrokerAccountFactory(owner=owner)
    payload = {
        "recorder": RecorderFactory(owner=owner).pk,
        "account": account.pk,
        "subaccounts": [{"id": "999"}],
    }
    response = owner_api.post("/api/traders/", payload, format="json")
    assert response.status_code == 400
    assert "not an active sub-account" in response.json()["subaccounts"][0]


def test_someone_elses_trader_is_a_404(stranger_api):
    trader = TraderFactory()
    path = f"/api/traders/{trader.pk}/"
    assert stranger_api.get(path).status_code == 404
    assert stranger_api.patch(path, {"enabled": False}, format="json").status_code == 404
    assert stranger_api.delete(path).status_code == 404
    assert Trader.objects.get(pk=trader.pk).enabled


def test_the_trader_list_has_a_query_budget(owner_api, owner, django_assert_max_num_queries):
    for _ in range(6):
        TraderFactory(
            recorder=RecorderFactory(owner=UserFactory(), is_private=False),
            account=BrokerAccountFactory(owner=owner),
        )
    with django_assert_max_num_queries(5):
        assert owner_api.get("/api/traders/").json()["count"] == 6
