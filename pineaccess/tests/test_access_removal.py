"""Revoking, expiring and switching scripts off: TradingView first, then the database."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from justtrades.tests.factories import UserFactory
from pineaccess.models import AccessLog, PineScript, ScriptAccess
from pineaccess.services.access import (
    script_access_apply,
    script_access_expire_due,
    script_access_grant,
    script_access_revoke,
    script_access_revoke_for_user,
)
from pineaccess.services.scripts import (
    pine_script_deactivate,
    pine_script_remove_everyone,
    pine_script_update,
)
from pineaccess.tasks import (
    expire_script_access,
    remove_everyone_from_script,
    remove_script_access,
    resume_script_access,
)
from pineaccess.tests.factories import ScriptAccessFactory
from pineaccess.tradingview import TradingViewClient

pytestmark = pytest.mark.django_db

Status = ScriptAccess.Status


@pytest.fixture
def active(buyer, script, fake_tv, tv_users):
    """Alice has 30 days of access, here and on TradingView."""
    [row] = script_access_grant(user=buyer, scripts=[script], duration_days=30)
    script_access_apply(access_id=row.pk)
    row.refresh_from_db()
    assert row.status == Status.ACTIVE
    return row


def test_revoking_removes_access_on_tradingview_then_marks_the_row_removed(
    active, script, fake_tv, staff, eager_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        row = script_access_revoke(access=active, requested_by=staff)
    row.refresh_from_db()
    assert row.status == Status.REMOVED
    assert row.removed_at is not None
    assert fake_tv.access(script.pine_id) == {}
    log = AccessLog.objects.get(operation="remove")
    assert (log.actor, log.actor_user, log.outcome) == ("staff", staff, "success")


def test_a_failed_removal_keeps_the_row_removing_with_the_reason(active, script, fake_tv):
    ScriptAccess.objects.filter(pk=active.pk).update(status=Status.REMOVING)
    fake_tv.require_captcha = True
    fake_tv.expire_sessions()

    remove_script_access.apply(args=[active.pk])

    active.refresh_from_db()
    assert active.status == Status.REMOVING
    assert active.error_code == "captcha_required"
    assert "Alice_Trades" in fake_tv.access(script.pine_id)


def test_removing_someone_tradingview_no_longer_lists_still_succeeds(active, script, fake_tv):
    fake_tv.scripts[script.pine_id].access.clear()
    ScriptAccess.objects.filter(pk=active.pk).update(status=Status.REMOVING)
    result = script_access_apply(access_id=active.pk)
    assert result.status == Status.REMOVED
    assert "had no access" in result.detail


def test_removing_a_username_tradingview_never_heard_of_succeeds(buyer, script, fake_tv):
    row = ScriptAccessFactory(user=buyer, script=script, status=Status.REMOVING, tradingview_username="Ghost")
    result = script_access_apply(access_id=row.pk)
    assert result.status == Status.REMOVED
    assert "no TradingView user Ghost" in result.detail


def test_a_grant_made_while_a_removal_runs_is_granted_again_afterwards(
    active, script, fake_tv, monkeypatch, pineaccess_tasks
):
    pineaccess_tasks.clear()  # only what the work below publishes, not the fixtures' grants
    ScriptAccess.objects.filter(pk=active.pk).update(status=Status.REMOVING)
    real = TradingViewClient.remove_access

    def regrant_meanwhile(client, *args):
        ScriptAccess.objects.filter(pk=active.pk).update(status=Status.PENDING)
        return real(client, *args)

    monkeypatch.setattr(TradingViewClient, "remove_access", regrant_meanwhile)
    result = script_access_apply(access_id=active.pk)
    assert result.status == Status.PENDING
    assert pineaccess_tasks == [("grant_script_access", active.pk)]


def test_granting_after_revocation_started_restarts_the_time_from_now(
    active, django_capture_on_commit_callbacks
):
    ScriptAccess.objects.filter(pk=active.pk).update(
        status=Status.REMOVING, expires_at=timezone.now() + timedelta(days=100)
    )
    [row] = script_access_grant(user=active.user, scripts=[active.script], duration_days=2)
    assert row.pk == active.pk
    assert row.status == Status.PENDING
    assert row.expires_at <= timezone.now() + timedelta(days=2)


def test_revoking_all_of_a_users_access_only_touches_that_user(active, stranger, script):
    other = ScriptAccessFactory(user=stranger, script=script)
    rows = script_access_revoke_for_user(user=active.user)
    assert [row.status for row in rows] == [Status.REMOVING]
    other.refresh_from_db()
    assert other.status == Status.ACTIVE


def test_expired_access_is_removed_on_tradingview_first_then_in_the_database(
    active, script, fake_tv, eager_tasks, django_capture_on_commit_callbacks
):
    later = active.expires_at + timedelta(minutes=1)
    with time_machine.travel(later), django_capture_on_commit_callbacks(execute=True):
        assert expire_script_access.apply().get() == 1
    active.refresh_from_db()
    assert active.status == Status.REMOVED
    assert fake_tv.access(script.pine_id) == {}
    log = AccessLog.objects.get(operation="remove")
    assert (log.actor, log.outcome) == ("system", "success")


def test_access_that_has_not_expired_is_left_alone(active, fake_tv, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert script_access_expire_due() == []
    active.refresh_from_db()
    assert active.status == Status.ACTIVE


def test_lifetime_access_never_expires(buyer, script):
    ScriptAccessFactory(user=buyer, script=script, expires_at=None)
    with time_machine.travel(datetime(2100, 1, 1, tzinfo=UTC)):
        assert script_access_expire_due(queue=False) == []


def test_expiry_stays_in_the_database_until_tradingview_confirms(active, script, fake_tv, unreachable_tv):
    with time_machine.travel(active.expires_at + timedelta(minutes=1)):
        [pk] = script_access_expire_due(queue=False)
        remove_script_access.apply(args=[pk])
    active.refresh_from_db()
    assert active.status == Status.REMOVING
    assert "could not be reached" in active.last_error


def test_rows_left_behind_by_lost_messages_are_queued_again(buyer, script, pineaccess_tasks):
    now = timezone.now()
    never_tried = ScriptAccessFactory(user=buyer, script=script, status=Status.PENDING)
    removing = ScriptAccessFactory(status=Status.REMOVING)
    fresh = ScriptAccessFactory(status=Status.PENDING)
    held = ScriptAccessFactory(status=Status.PENDING, claimed_until=now + timedelta(minutes=3))
    waiting_for_retry = ScriptAccessFactory(status=Status.PENDING, attempts=2)
    forgotten = ScriptAccessFactory(status=Status.REMOVING, attempts=3)
    outage = ScriptAccessFactory(status=Status.FAILED, error_code="trading_view_unavailable")
    wrong_name = ScriptAccessFactory(status=Status.FAILED, error_code="user_not_found")
    ago = {
        never_tried: timedelta(minutes=10),
        removing: timedelta(minutes=10),
        held: timedelta(hours=1),
        waiting_for_retry: timedelta(minutes=20),
        forgotten: timedelta(hours=1),
        outage: timedelta(hours=2),
        wrong_name: timedelta(hours=2),
    }
    for row, age in ago.items():
        ScriptAccess.objects.filter(pk=row.pk).update(updated_at=now - age)

    assert resume_script_access.apply().get() == 4

    assert sorted(pineaccess_tasks) == sorted(
        [
            ("grant_script_access", never_tried.pk),
            ("remove_script_access", removing.pk),
            ("remove_script_access", forgotten.pk),
            ("grant_script_access", outage.pk),
        ]
    )
    assert fresh.pk not in [args[1] for args in pineaccess_tasks]
    outage.refresh_from_db()
    assert (outage.status, outage.attempts) == (Status.PENDING, 0)


def test_deactivating_a_script_removes_everyone_on_tradingview_then_deletes_its_grants(
    active, script, fake_tv, staff, stranger, eager_tasks, django_capture_on_commit_callbacks
):
    failed = ScriptAccessFactory(user=stranger, script=script, status=Status.FAILED)
    gone = ScriptAccessFactory(user=UserFactory(), script=script, status=Status.REMOVED)
    fake_tv.set_access(script.pine_id, "HandGranted", None)

    with django_capture_on_commit_callbacks(execute=True):
        pine_script_deactivate(script=script, requested_by=staff)

    script.refresh_from_db()
    assert script.active is False
    assert fake_tv.access(script.pine_id) == {}
    assert not ScriptAccess.objects.filter(script=script).exists()
    assert not ScriptAccess.objects.filter(pk__in=[failed.pk, gone.pk]).exists()
    removed = set(
        AccessLog.objects.filter(operation="remove", outcome="success").values_list(
            "tradingview_username", flat=True
        )
    )
    assert removed == {"Alice_Trades", "BobCharts", "HandGranted"}
    assert AccessLog.objects.filter(operation="deactivate", detail__contains="3 grants deleted").exists()


def test_grants_are_kept_until_everyone_is_really_gone_from_tradingview(active, script, fake_tv, staff):
    pine_script_deactivate(script=script, requested_by=staff)
    fake_tv.require_captcha = True
    fake_tv.expire_sessions()

    result = remove_everyone_from_script.apply(args=[script.pk]).get()

    assert result["failures"]
    assert ScriptAccess.objects.filter(script=script, status=Status.REMOVING).count() == 1
    assert "Alice_Trades" in fake_tv.access(script.pine_id)


def test_a_script_switched_on_again_before_the_task_runs_is_left_alone(active, script, fake_tv, staff):
    pine_script_deactivate(script=script, requested_by=staff)
    PineScript.objects.filter(pk=script.pk).update(active=True)
    result = pine_script_remove_everyone(script_id=script.pk)
    assert result.skipped
    assert "Alice_Trades" in fake_tv.access(script.pine_id)


def test_switching_a_script_off_through_update_deactivates_it(active, script, staff, pineaccess_tasks):
    pineaccess_tasks.clear()  # only what the work below publishes, not the fixtures' grants
    pine_script_update(script=script, requested_by=staff, active=False)
    assert pineaccess_tasks == [("remove_everyone_from_script", script.pk)]
    active.refresh_from_db()
    assert active.status == Status.REMOVING


def test_a_switched_off_script_can_be_switched_on_again_and_starts_clean(script, staff):
    PineScript.objects.filter(pk=script.pk).update(active=False)
    script.refresh_from_db()
    pine_script_update(script=script, requested_by=staff, active=True, name="Trend Rider v2")
    script.refresh_from_db()
    assert (script.active, script.name) == (True, "Trend Rider v2")
    assert not ScriptAccess.objects.filter(script=script).exists()
    assert AccessLog.objects.filter(
        operation="deactivate", detail__contains="switched Trend Rider v2 on"
    ).exists()
