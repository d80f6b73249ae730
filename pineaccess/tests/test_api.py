"""The JSON API: who may see and change scripts and access, and the username check."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from pineaccess.models import AccessLog, PineScript, ScriptAccess
from pineaccess.services.usernames import USERNAME_CHECK_SESSION_KEY
from pineaccess.tests.factories import PineScriptFactory, ScriptAccessFactory

pytestmark = pytest.mark.django_db

Status = ScriptAccess.Status
PINE_ID = "PUB;3be120ba74944ca7b32ad644f40aaff2"


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def as_buyer(api, buyer) -> APIClient:
    api.force_authenticate(buyer)
    return api


@pytest.fixture
def as_staff(api, staff) -> APIClient:
    api.force_authenticate(staff)
    return api


# ------------------------------------------------------------------------------------------ pine scripts


def test_anonymous_callers_get_nothing(api, db):
    assert api.get("/api/pine-scripts/").status_code == 401
    assert api.get("/api/script-access/").status_code == 401


def test_a_token_works_as_well_as_the_session(api, buyer):
    token = Token.objects.create(user=buyer)
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert api.get("/api/pine-scripts/").status_code == 200


def test_a_user_sees_only_the_scripts_they_have_access_to(as_buyer, buyer):
    mine = ScriptAccessFactory(user=buyer).script
    ScriptAccessFactory(user=buyer, status=Status.REMOVED)  # removed: no longer theirs
    PineScriptFactory()

    answer = as_buyer.get("/api/pine-scripts/").json()

    assert answer["count"] == 1
    assert answer["results"] == [
        {"id": mine.pk, "pine_id": mine.pine_id, "name": mine.name, "description": "", "active": True}
    ]


def test_a_user_cannot_create_change_or_delete_scripts(as_buyer, buyer):
    script = ScriptAccessFactory(user=buyer).script
    assert as_buyer.post("/api/pine-scripts/", {"pine_id": PINE_ID, "name": "x"}).status_code == 403
    assert as_buyer.patch(f"/api/pine-scripts/{script.pk}/", {"active": False}).status_code == 403
    assert as_buyer.delete(f"/api/pine-scripts/{script.pk}/").status_code == 403
    assert PineScript.objects.filter(pk=script.pk, active=True).exists()


def test_staff_add_a_script_and_a_bad_id_is_explained(as_staff):
    created = as_staff.post("/api/pine-scripts/", {"pine_id": PINE_ID, "name": "Trend Rider"}, format="json")
    assert created.status_code == 201
    assert created.json()["name"] == "Trend Rider"

    bad = as_staff.post("/api/pine-scripts/", {"pine_id": "PUB;nothex", "name": "x"}, format="json")
    assert bad.status_code == 400
    assert "PUB; followed by 32 hexadecimal characters" in bad.json()["pine_id"][0]


def test_a_script_added_without_a_name_is_named_by_its_id_until_tradingview_tells(as_staff):
    created = as_staff.post("/api/pine-scripts/", {"pine_id": PINE_ID}, format="json")
    assert created.json()["name"] == PINE_ID


def test_staff_switching_a_script_off_removes_everyones_access(as_staff, buyer, pineaccess_tasks):
    row = ScriptAccessFactory(user=buyer)

    answer = as_staff.patch(f"/api/pine-scripts/{row.script.pk}/", {"active": False}, format="json")

    assert answer.status_code == 200
    assert answer.json()["active"] is False
    row.refresh_from_db()
    assert row.status == Status.REMOVING
    assert pineaccess_tasks == [("remove_everyone_from_script", row.script.pk)]


def test_the_script_id_cannot_change(as_staff, db):
    script = PineScriptFactory()
    answer = as_staff.patch(f"/api/pine-scripts/{script.pk}/", {"pine_id": PINE_ID}, format="json")
    assert answer.status_code == 400
    assert "cannot change" in answer.json()["pine_id"][0]


def test_a_script_with_grants_cannot_be_deleted_until_switched_off(as_staff, buyer):
    row = ScriptAccessFactory(user=buyer)
    answer = as_staff.delete(f"/api/pine-scripts/{row.script.pk}/")
    assert answer.status_code == 400
    assert "Switch it off first" in answer.json()["detail"]
    empty = PineScriptFactory()
    assert as_staff.delete(f"/api/pine-scripts/{empty.pk}/").status_code == 204


# ------------------------------------------------------------------------------------------ script access


def test_a_user_reads_only_their_own_access_with_a_reason_they_can_use(as_buyer, buyer, stranger):
    mine = ScriptAccessFactory(
        user=buyer, status=Status.FAILED, last_error="Captcha... paste cookies", error_code="captcha_required"
    )
    ScriptAccessFactory(user=stranger)

    answer = as_buyer.get("/api/script-access/").json()

    assert answer["count"] == 1
    [row] = answer["results"]
    assert row["id"] == mine.pk
    assert row["status"] == "failed"
    assert row["tradingview_username"] == "Alice_Trades"
    assert "you do not need to do anything" in row["last_error"]
    assert set(row) >= {"user", "script", "tradingview_username", "status", "expires_at", "last_error"}


def test_a_user_cannot_read_someone_elses_access(as_buyer, stranger):
    other = ScriptAccessFactory(user=stranger)
    assert as_buyer.get(f"/api/script-access/{other.pk}/").status_code == 404


def test_a_user_cannot_grant_extend_or_revoke(as_buyer, buyer):
    row = ScriptAccessFactory(user=buyer)
    body = {"user": buyer.pk, "script": row.script.pk, "days": 30}
    assert as_buyer.post("/api/script-access/", body, format="json").status_code == 403
    assert as_buyer.patch(f"/api/script-access/{row.pk}/", {"days": 5}, format="json").status_code == 403
    assert as_buyer.delete(f"/api/script-access/{row.pk}/").status_code == 403


def test_staff_grant_access_and_it_starts_pending(as_staff, buyer, staff, pineaccess_tasks):
    script = PineScriptFactory()
    answer = as_staff.post(
        "/api/script-access/", {"user": buyer.pk, "script": script.pk, "days": None}, format="json"
    )
    assert answer.status_code == 201
    body = answer.json()
    assert (body["status"], body["expires_at"], body["tradingview_username"]) == (
        "pending",
        None,
        "Alice_Trades",
    )
    row = ScriptAccess.objects.get(pk=body["id"])
    assert (row.requested_by, row.requested_by_actor) == (staff, "staff")
    assert pineaccess_tasks == [("grant_script_access", row.pk)]


def test_staff_grants_are_refused_with_a_reason(as_staff, stranger):
    stranger.tradingview_username = None
    stranger.save()
    script = PineScriptFactory()
    answer = as_staff.post("/api/script-access/", {"user": stranger.pk, "script": script.pk, "days": 3})
    assert answer.status_code == 400
    assert "no TradingView username" in answer.json()["detail"]


def test_staff_extend_access_by_days_or_set_an_exact_expiry(as_staff, buyer, pineaccess_tasks):
    expiry = (timezone.now() + timedelta(days=10)).replace(microsecond=0)
    row = ScriptAccessFactory(user=buyer, expires_at=expiry)

    by_days = as_staff.patch(f"/api/script-access/{row.pk}/", {"days": 5}, format="json")
    assert by_days.status_code == 200
    row.refresh_from_db()
    assert (row.status, row.expires_at) == (Status.PENDING, expiry + timedelta(days=5))

    lifetime = as_staff.patch(f"/api/script-access/{row.pk}/", {"expires_at": None}, format="json")
    assert lifetime.json()["expires_at"] is None

    both = as_staff.patch(f"/api/script-access/{row.pk}/", {"days": 1, "expires_at": None}, format="json")
    assert both.status_code == 400


def test_staff_revoke_with_delete_and_the_row_is_kept_as_removing(as_staff, buyer, pineaccess_tasks):
    row = ScriptAccessFactory(user=buyer)
    answer = as_staff.delete(f"/api/script-access/{row.pk}/")
    assert answer.status_code == 202
    assert answer.json()["status"] == "removing"
    assert pineaccess_tasks == [("remove_script_access", row.pk)]


def test_staff_retry_a_failed_grant_but_nothing_else(as_staff, buyer, pineaccess_tasks):
    failed = ScriptAccessFactory(user=buyer, status=Status.FAILED)
    assert as_staff.post(f"/api/script-access/{failed.pk}/retry/").status_code == 202
    active = ScriptAccessFactory()
    answer = as_staff.post(f"/api/script-access/{active.pk}/retry/")
    assert answer.status_code == 400
    assert "Only failed access" in answer.json()["detail"]


def test_staff_filter_access_by_status(as_staff, buyer):
    ScriptAccessFactory(user=buyer, status=Status.FAILED)
    ScriptAccessFactory()
    assert as_staff.get("/api/script-access/?status=failed").json()["count"] == 1


def test_the_access_list_does_not_query_per_row(as_staff, django_assert_max_num_queries):
    for _ in range(5):
        ScriptAccessFactory()
    with django_assert_max_num_queries(4):
        assert as_staff.get("/api/script-access/").json()["count"] == 5


# ------------------------------------------------------------------------------------- username check


def test_the_username_check_answers_tradingviews_spelling(as_buyer, fake_tv):
    fake_tv.add_user("ChartWizard")
    answer = as_buyer.get("/api/tradingview/validate-username", {"username": "chartwizard"})
    assert answer.status_code == 200
    assert answer.json() == {"valid": True, "username": "ChartWizard"}


def test_the_username_check_explains_an_unknown_username(as_buyer, fake_tv):
    answer = as_buyer.get("/api/tradingview/validate-username", {"username": "Ghost"})
    assert answer.json()["valid"] is False
    assert "no TradingView user" in answer.json()["error"]


def test_the_username_check_needs_a_username(as_buyer):
    answer = as_buyer.get("/api/tradingview/validate-username")
    assert answer.status_code == 400
    assert answer.json() == {"valid": False, "error": "Enter a TradingView username."}


def test_an_unreachable_tradingview_gives_valid_null(as_buyer, unreachable_tv):
    answer = as_buyer.get("/api/tradingview/validate-username", {"username": "Someone"}).json()
    assert answer["valid"] is None
    assert "could not be reached" in answer["error"]


def test_answers_are_cached_briefly(as_buyer, fake_tv):
    fake_tv.add_user("ChartWizard")
    for _ in range(3):
        as_buyer.get("/api/tradingview/validate-username", {"username": "ChartWizard"})
    assert len(fake_tv.requests_to("/username_hint/")) == 1
    assert AccessLog.objects.filter(operation="validate_username").count() == 1


def test_checks_are_throttled_per_user(as_buyer, fake_tv, settings):
    settings.TRADINGVIEW_USERNAME_CHECKS_PER_MINUTE = 3
    codes = [
        as_buyer.get("/api/tradingview/validate-username", {"username": f"name{n}"}).status_code
        for n in range(4)
    ]
    assert codes == [200, 200, 200, 429]


def test_anonymous_visitors_may_check_only_once_registration_started(api, fake_tv):
    fake_tv.add_user("ChartWizard")
    assert api.get("/api/tradingview/validate-username", {"username": "ChartWizard"}).status_code == 401

    session = api.session
    session[USERNAME_CHECK_SESSION_KEY] = True
    session.save()
    answer = api.get("/api/tradingview/validate-username", {"username": "ChartWizard"})
    assert answer.json() == {"valid": True, "username": "ChartWizard"}


def test_a_check_by_someone_registering_is_audited_as_a_user(api, fake_tv):
    session = api.session
    session[USERNAME_CHECK_SESSION_KEY] = True
    session.save()
    api.get("/api/tradingview/validate-username", {"username": "Someone"})
    log = AccessLog.objects.get(operation="validate_username")
    assert (log.actor, log.actor_user) == ("user", None)
