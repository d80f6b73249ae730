import re

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts import keys
from accounts.models import AccessKey
from accounts.tests.factories import AccessKeyFactory, RedeemedAccessKeyFactory
from accounts.tests.test_access_keys import database_text
from justtrades.tests.factories import PASSWORD
from pineaccess.tests.factories import PineScriptFactory

RAW_KEY = re.compile(r"JT-[0-9A-Z]{5}-[0-9A-Z]{5}-[0-9A-Z]{5}-[0-9A-Z]{5}")


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def staff_api(staff) -> APIClient:
    client = APIClient()
    client.force_authenticate(staff)
    return client


# --------------------------------------------------------------------------------------------------- token


def test_an_approved_user_exchanges_username_and_password_for_a_token(api, approved_user):
    response = api.post("/api/auth/token/", {"username": "alice", "password": PASSWORD}, format="json")
    assert response.status_code == 200
    token = Token.objects.get(user=approved_user)
    assert response.json() == {"token": token.key}
    again = api.post("/api/auth/token/", {"username": "alice", "password": PASSWORD}, format="json")
    assert again.json() == {"token": token.key}


def test_the_token_authenticates_api_requests(api, approved_user):
    token = api.post("/api/auth/token/", {"username": "alice", "password": PASSWORD}).json()["token"]
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.get("/api/access-keys/").status_code == 403  # authenticated, but not staff


def test_a_pending_user_gets_no_token(api, pending_user):
    response = api.post("/api/auth/token/", {"username": "penny", "password": PASSWORD})
    assert response.status_code == 403
    assert "waiting for approval" in response.json()["detail"]
    assert not Token.objects.exists()


@pytest.mark.parametrize(
    ("username", "password"), [("alice", "wrong"), ("rex", PASSWORD), ("nobody", PASSWORD)]
)
def test_wrong_or_inactive_credentials_get_no_token(api, approved_user, rejected_user, username, password):
    response = api.post("/api/auth/token/", {"username": username, "password": password})
    assert response.status_code == 400
    assert "do not match" in response.json()["detail"]
    assert not Token.objects.exists()


def test_missing_fields_are_named(api, db):
    response = api.post("/api/auth/token/", {"username": "alice"}, format="json")
    assert response.status_code == 400
    assert "password" in response.json()


def test_repeated_failed_token_requests_are_answered_with_429(api, approved_user, settings):
    settings.LOGIN_RATE_LIMIT = "2/900"
    for _ in range(2):
        api.post("/api/auth/token/", {"username": "alice", "password": "wrong"})
    response = api.post("/api/auth/token/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 429
    assert "Too many failed logins" in response.json()["detail"]
    assert "Retry-After" in response


# --------------------------------------------------------------------------------------------- access keys


def test_staff_create_keys_and_the_raw_keys_are_in_this_answer_only(staff_api, staff, script, other_script):
    response = staff_api.post(
        "/api/access-keys/",
        {
            "count": 2,
            "scripts": [script.pine_id, other_script.pine_id],
            "days": 30,
            "note": "order 42",
            "auto_approve": False,
        },
        format="json",
    )
    assert response.status_code == 201
    assert "no-store" in response["Cache-Control"]
    body = response.json()
    assert body["count"] == 2
    raws = [item["key"] for item in body["keys"]]
    assert all(RAW_KEY.fullmatch(raw) for raw in raws)
    for item in body["keys"]:
        assert item["state"] == "unused"
        assert sorted(item["scripts"]) == sorted([script.pine_id, other_script.pine_id])
        assert (item["days"], item["note"], item["auto_approve"], item["created_by"]) == (
            30,
            "order 42",
            False,
            "olivia",
        )
        assert AccessKey.objects.get(pk=item["id"]).key_hash == keys.digest(keys.normalize(item["key"]))
    stored = database_text()
    assert not any(raw in stored for raw in raws)
    listing = staff_api.get("/api/access-keys/")
    assert not RAW_KEY.search(listing.content.decode())


def test_keys_created_with_defaults_are_lifetime_auto_approving_and_grant_the_default_scripts(staff_api):
    response = staff_api.post("/api/access-keys/", {"count": 1}, format="json")
    assert response.status_code == 201
    [item] = response.json()["keys"]
    assert (item["scripts"], item["days"], item["auto_approve"], item["note"]) == ([], None, True, "")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"count": 0}, "count"),
        ({"count": 1001}, "count"),
        ({"count": 1, "days": 0}, "days"),
        ({"count": 1, "scripts": ["PUB;00000000000000000000000000000000"]}, "scripts"),
        ({"count": 1, "valid_until": "2001-01-01T00:00:00Z"}, "valid_until"),
        ({}, "count"),
    ],
)
def test_bad_requests_to_create_keys_name_the_field_and_create_nothing(staff_api, body, field):
    response = staff_api.post("/api/access-keys/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not AccessKey.objects.exists()


def test_an_unknown_script_id_is_named_in_the_error(staff_api, script):
    response = staff_api.post(
        "/api/access-keys/", {"count": 1, "scripts": [script.pine_id, "PUB;nope"]}, format="json"
    )
    assert response.status_code == 400
    assert "PUB;nope" in response.json()["scripts"][0]


def test_only_staff_may_use_the_access_key_api(api, approved_user):
    assert api.get("/api/access-keys/").status_code in (401, 403)
    api.force_authenticate(approved_user)
    assert api.get("/api/access-keys/").status_code == 403
    assert api.post("/api/access-keys/", {"count": 1}, format="json").status_code == 403
    assert not AccessKey.objects.exists()


def test_the_key_list_is_paginated_filtered_by_state_and_takes_a_fixed_number_of_queries(
    staff_api, django_assert_max_num_queries
):
    scripts = PineScriptFactory.create_batch(2)
    for _ in range(20):
        RedeemedAccessKeyFactory().scripts.set(scripts)
    AccessKeyFactory.create_batch(5)
    with django_assert_max_num_queries(5):
        response = staff_api.get("/api/access-keys/")
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 25
    assert "key" not in body["results"][0]
    assert staff_api.get("/api/access-keys/", {"state": "unused"}).json()["count"] == 5
    assert staff_api.get("/api/access-keys/", {"state": "redeemed"}).json()["count"] == 20
    assert staff_api.get("/api/access-keys/", {"state": "sideways"}).status_code == 400


def test_staff_revoke_an_unused_key_through_the_api(staff_api):
    unused, redeemed = AccessKeyFactory(), RedeemedAccessKeyFactory()
    response = staff_api.post(f"/api/access-keys/{unused.pk}/revoke/")
    assert response.status_code == 200
    assert response.json()["state"] == "revoked"
    response = staff_api.post(f"/api/access-keys/{redeemed.pk}/revoke/")
    assert response.status_code == 409
    assert "redeemed" in response.json()["detail"]


def test_the_openapi_schema_describes_the_accounts_endpoints(staff_api):
    response = staff_api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/auth/token/" in paths
    assert "/api/access-keys/" in paths


def test_script_ids_may_also_come_as_one_comma_separated_string(staff_api, script, other_script):
    response = staff_api.post(
        "/api/access-keys/",
        {"count": 1, "scripts": f"{script.pine_id}, {other_script.pine_id}"},
        format="json",
    )
    assert response.status_code == 201
    assert sorted(response.json()["keys"][0]["scripts"]) == sorted([script.pine_id, other_script.pine_id])
    form = staff_api.post("/api/access-keys/", {"count": 1, "scripts": [script.pine_id]})
    assert form.status_code == 201
    assert form.json()["keys"][0]["scripts"] == [script.pine_id]
