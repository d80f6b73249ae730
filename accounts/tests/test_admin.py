import re

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

from accounts import keys, services
from accounts.models import AccessKey, ApprovalLog, User
from accounts.tests.factories import AccessKeyFactory, RedeemedAccessKeyFactory
from accounts.tests.test_access_keys import database_text
from justtrades.tests.factories import UserFactory
from pineaccess.models import ScriptAccess
from pineaccess.tests.factories import PineScriptFactory

USERS = "/admin/accounts/user/"
KEYS = "/admin/accounts/accesskey/"
RAW_KEY = re.compile(rb"JT-[0-9A-Z]{5}-[0-9A-Z]{5}-[0-9A-Z]{5}-[0-9A-Z]{5}")


def act(client, url, action, objects, **extra):
    return client.post(url, {"action": action, ACTION_CHECKBOX_NAME: [obj.pk for obj in objects], **extra})


# ------------------------------------------------------------------------------------------------ approval


def test_the_user_list_filters_pending_users(staff_client, pending_user, approved_user):
    response = staff_client.get(USERS, {"approval_status__exact": "pending"})
    assert response.status_code == 200
    assert b"penny" in response.content
    assert b">alice<" not in response.content


def test_staff_approve_pending_users_in_bulk_and_the_log_says_who_and_when(staff_client, staff, pending_user):
    other = UserFactory(username="paula", approval_status=User.ApprovalStatus.PENDING)
    response = act(staff_client, USERS, "approve_users", [pending_user, other])
    assert response.status_code == 302
    for user in (pending_user, other):
        user.refresh_from_db()
        assert user.is_approved
        log = ApprovalLog.objects.get(user=user)
        assert (log.decision, log.decided_by) == (ApprovalLog.Decision.APPROVED, staff)
        assert log.created_at is not None


def test_rejecting_asks_for_a_reason_first(staff_client, pending_user):
    response = act(staff_client, USERS, "reject_users", [pending_user])
    assert response.status_code == 200
    assert b"Reject and deactivate" in response.content
    pending_user.refresh_from_db()
    assert pending_user.approval_status == User.ApprovalStatus.PENDING
    response = act(staff_client, USERS, "reject_users", [pending_user], apply="1", reason="")
    assert response.status_code == 200
    assert b"This field is required" in response.content


def test_rejecting_deactivates_the_user_records_why_and_deletes_nothing(staff_client, staff, pending_user):
    response = act(
        staff_client, USERS, "reject_users", [pending_user], apply="1", reason="Chargeback on order 77"
    )
    assert response.status_code == 302
    pending_user.refresh_from_db()
    assert pending_user.approval_status == User.ApprovalStatus.REJECTED
    assert not pending_user.is_active
    log = ApprovalLog.objects.get(user=pending_user)
    assert (log.decision, log.decided_by, log.reason) == ("rejected", staff, "Chargeback on order 77")


def test_only_pending_users_can_be_rejected(staff, approved_user):
    assert not services.user_reject(user=approved_user, rejected_by=staff, reason="no")
    approved_user.refresh_from_db()
    assert approved_user.is_approved
    assert approved_user.is_active
    assert not ApprovalLog.objects.exists()


def test_approving_a_rejected_user_reactivates_the_account(staff, rejected_user):
    assert services.user_approve(user=rejected_user, approved_by=staff)
    rejected_user.refresh_from_db()
    assert rejected_user.is_approved
    assert rejected_user.is_active
    assert not services.user_approve(user=rejected_user, approved_by=staff)
    assert ApprovalLog.objects.filter(user=rejected_user).count() == 1


def test_approval_status_changes_only_through_the_actions(staff_client, pending_user):
    response = staff_client.get(f"{USERS}{pending_user.pk}/change/")
    assert response.status_code == 200
    assert b'name="approval_status"' not in response.content


def test_the_approval_log_is_read_only(staff_client, staff, pending_user):
    services.user_approve(user=pending_user, approved_by=staff)
    log = ApprovalLog.objects.get()
    assert staff_client.get("/admin/accounts/approvallog/").status_code == 200
    assert staff_client.get("/admin/accounts/approvallog/add/").status_code == 403
    assert (
        staff_client.post(f"/admin/accounts/approvallog/{log.pk}/delete/", {"post": "yes"}).status_code == 403
    )
    assert ApprovalLog.objects.filter(pk=log.pk).exists()


def test_staff_cannot_change_a_tradingview_username_while_access_is_live(staff_client, approved_user, script):
    ScriptAccess.objects.create(
        user=approved_user,
        script=script,
        tradingview_username="Alice_Trades",
        status=ScriptAccess.Status.ACTIVE,
    )
    url = f"{USERS}{approved_user.pk}/change/"
    form = staff_client.get(url).context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name != "password"}
    data.update(
        {
            "tradingview_username": "Someone_Else",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
            "approval_logs-TOTAL_FORMS": "0",
            "approval_logs-INITIAL_FORMS": "0",
        }
    )
    data.pop("date_joined", None)
    data.pop("last_login", None)
    data.pop("groups", None)
    data.pop("user_permissions", None)
    response = staff_client.post(url, data)
    assert response.status_code == 200
    assert b"cannot change while script access" in response.content
    approved_user.refresh_from_db()
    assert approved_user.tradingview_username == "Alice_Trades"


# -------------------------------------------------------------------------------------------- access keys


def test_the_add_page_is_the_bulk_creation_form(staff_client, script):
    response = staff_client.get(f"{KEYS}add/")
    assert response.status_code == 200
    for field in ("count", "scripts", "access_days", "valid_until", "note", "auto_approve"):
        assert f'name="{field}"'.encode() in response.content
    assert script.name.encode() in response.content


def test_bulk_creation_shows_the_raw_keys_once_and_stores_only_their_hashes(staff_client, staff, script):
    response = staff_client.post(
        f"{KEYS}add/",
        {
            "count": "3",
            "scripts": [script.pk],
            "access_days": "30",
            "note": "Black Friday",
            "auto_approve": "on",
        },
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    shown = {match.decode() for match in RAW_KEY.findall(response.content)}
    assert len(shown) == 3
    created = AccessKey.objects.all()
    assert created.count() == 3
    stored = database_text()
    for raw in shown:
        assert raw not in stored
        key = created.get(key_hash=keys.digest(keys.normalize(raw)))
        assert (key.access_days, key.note, key.auto_approve, key.created_by) == (
            30,
            "Black Friday",
            True,
            staff,
        )
        assert list(key.scripts.all()) == [script]
    # The list and the key's own page never show a raw key again.
    assert not RAW_KEY.search(staff_client.get(KEYS).content)
    assert not RAW_KEY.search(staff_client.get(f"{KEYS}{created.first().pk}/change/").content)


def test_bulk_creation_refuses_bad_input_with_the_form(staff_client):
    response = staff_client.post(f"{KEYS}add/", {"count": "0"})
    assert response.status_code == 200
    assert b"Ensure this value is greater than or equal to 1" in response.content
    assert not AccessKey.objects.exists()


def test_staff_revoke_unused_keys_and_leave_redeemed_ones_alone(staff_client, staff):
    unused, redeemed = AccessKeyFactory(), RedeemedAccessKeyFactory()
    response = act(staff_client, KEYS, "revoke_keys", [unused, redeemed])
    assert response.status_code == 302
    unused.refresh_from_db()
    redeemed.refresh_from_db()
    assert (unused.state, unused.revoked_by) == (AccessKey.State.REVOKED, staff)
    assert redeemed.state == AccessKey.State.REDEEMED


@pytest.mark.parametrize("state", ["unused", "redeemed", "revoked"])
def test_the_key_list_filters_by_state(staff_client, staff, state):
    AccessKeyFactory(note="unused-one")
    RedeemedAccessKeyFactory(note="redeemed-one")
    services.access_keys_revoke(access_keys=[AccessKeyFactory(note="revoked-one")], revoked_by=staff)
    response = staff_client.get(KEYS, {"state": state})
    assert response.status_code == 200
    notes = {
        note for note in ("unused-one", "redeemed-one", "revoked-one") if note.encode() in response.content
    }
    assert notes == {f"{state}-one"}


def test_the_key_list_takes_a_fixed_number_of_queries(staff_client, django_assert_max_num_queries):
    scripts = PineScriptFactory.create_batch(3)
    for _ in range(30):
        key = RedeemedAccessKeyFactory()
        key.scripts.set(scripts)
    with django_assert_max_num_queries(12):
        response = staff_client.get(KEYS)
    assert response.status_code == 200


def test_keys_cannot_be_deleted(staff_client):
    key = AccessKeyFactory()
    assert staff_client.post(f"{KEYS}{key.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AccessKey.objects.filter(pk=key.pk).exists()


def test_staff_edit_the_note_and_validity_of_an_unused_key_but_not_what_it_grants(staff_client, script):
    key = AccessKeyFactory(access_days=30)
    key.scripts.set([script])
    url = f"{KEYS}{key.pk}/change/"
    page = staff_client.get(url)
    assert page.status_code == 200
    assert b'name="note"' in page.content
    assert b'name="valid_until_0"' in page.content
    assert b'name="access_days"' not in page.content
    response = staff_client.post(url, {"note": "for Carol", "valid_until_0": "", "valid_until_1": ""})
    assert response.status_code == 302
    key.refresh_from_db()
    assert (key.note, key.access_days, list(key.scripts.all())) == ("for Carol", 30, [script])


def test_a_redeemed_key_keeps_its_validity(staff_client):
    key = RedeemedAccessKeyFactory()
    page = staff_client.get(f"{KEYS}{key.pk}/change/")
    assert b'name="valid_until_0"' not in page.content
