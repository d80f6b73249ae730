"""Granting access: script_access_grant in the caller's transaction, the task after commit, TradingView."""

from datetime import timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from pineaccess.models import AccessLog, ScriptAccess
from pineaccess.services.access import AccessBusy, script_access_apply, script_access_grant
from pineaccess.tests.factories import PineScriptFactory, ScriptAccessFactory
from pineaccess.tradingview import TradingViewClient

pytestmark = pytest.mark.django_db(transaction=False)

Status = ScriptAccess.Status


def test_a_grant_creates_pending_rows_and_queues_nothing_before_commit(buyer, script, fake_tv, eager_tasks):
    with transaction.atomic():
        [row] = script_access_grant(user=buyer, scripts=[script], duration_days=30)
        assert row.status == Status.PENDING
        assert row.tradingview_username == "Alice_Trades"
    # The db fixture's outer transaction never commits, so the task was never sent.
    assert fake_tv.access(script.pine_id) == {}


def test_redeeming_grants_access_on_tradingview_and_the_row_becomes_active_with_its_expiry(
    buyer, script, fake_tv, tv_users, eager_tasks, django_capture_on_commit_callbacks
):
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        [row] = script_access_grant(user=buyer, scripts=[script], duration_days=30, requested_by=buyer)
    assert len(callbacks) == 1

    row.refresh_from_db()
    assert row.status == Status.ACTIVE
    assert row.granted_at is not None
    assert row.last_error == ""
    expected = (before + timedelta(days=30)).replace(microsecond=0)
    assert abs(row.expires_at - expected) <= timedelta(seconds=2)
    on_tv = fake_tv.access(script.pine_id)
    assert list(on_tv) == ["Alice_Trades"]
    assert on_tv["Alice_Trades"].replace(microsecond=0) == row.expires_at
    log = AccessLog.objects.get(operation=AccessLog.Operation.GRANT)
    assert (log.actor, log.actor_user, log.target_user, log.outcome) == ("user", buyer, buyer, "success")
    assert log.pine_id == script.pine_id
    assert "added Alice_Trades" in log.detail


def test_a_lifetime_grant_sends_no_expiration(
    buyer, script, fake_tv, tv_users, eager_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        [row] = script_access_grant(user=buyer, scripts=[script], duration_days=None)
    row.refresh_from_db()
    assert row.status == Status.ACTIVE
    assert row.expires_at is None
    assert fake_tv.access(script.pine_id) == {"Alice_Trades": None}
    [add] = fake_tv.requests_to("/pine_perm/add/")
    assert "expiration" not in add.form


def test_the_granted_username_takes_tradingviews_spelling(
    buyer, script, fake_tv, eager_tasks, django_capture_on_commit_callbacks
):
    fake_tv.add_user("ALICE_trades")
    with django_capture_on_commit_callbacks(execute=True):
        [row] = script_access_grant(user=buyer, scripts=[script], duration_days=7)
    row.refresh_from_db()
    assert row.tradingview_username == "ALICE_trades"
    assert list(fake_tv.access(script.pine_id)) == ["ALICE_trades"]


def test_granting_again_extends_active_access_from_its_current_expiry(
    buyer, script, fake_tv, tv_users, eager_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        [row] = script_access_grant(user=buyer, scripts=[script], duration_days=10)
    row.refresh_from_db()
    first_expiry = row.expires_at

    with django_capture_on_commit_callbacks(execute=True):
        [again] = script_access_grant(user=buyer, scripts=[script], duration_days=5, requested_by=None)
    again.refresh_from_db()

    assert again.pk == row.pk
    assert again.status == Status.ACTIVE
    assert again.expires_at == first_expiry + timedelta(days=5)
    assert fake_tv.access(script.pine_id)["Alice_Trades"].replace(microsecond=0) == again.expires_at
    extend = AccessLog.objects.get(operation=AccessLog.Operation.EXTEND)
    assert extend.actor == "system"
    assert "changed Alice_Trades" in extend.detail
    assert ScriptAccess.objects.filter(user=buyer).count() == 1


def test_extending_lifetime_access_changes_nothing_and_queues_nothing(
    buyer, script, django_capture_on_commit_callbacks
):
    ScriptAccessFactory(user=buyer, script=script, expires_at=None, status=Status.ACTIVE)
    with django_capture_on_commit_callbacks() as callbacks:
        [row] = script_access_grant(user=buyer, scripts=[script], duration_days=30)
    assert callbacks == []
    assert (row.status, row.expires_at) == (Status.ACTIVE, None)


def test_a_lifetime_grant_turns_dated_access_into_lifetime(
    buyer, script, fake_tv, tv_users, eager_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        script_access_grant(user=buyer, scripts=[script], duration_days=3)
    with django_capture_on_commit_callbacks(execute=True):
        [row] = script_access_grant(user=buyer, scripts=[script], duration_days=None)
    row.refresh_from_db()
    assert (row.status, row.expires_at) == (Status.ACTIVE, None)
    assert fake_tv.access(script.pine_id) == {"Alice_Trades": None}


def test_a_grant_for_several_scripts_makes_one_row_each(
    buyer, fake_tv, tv_users, eager_tasks, django_capture_on_commit_callbacks
):
    scripts = [PineScriptFactory(), PineScriptFactory()]
    for item in scripts:
        fake_tv.add_script(item.pine_id)
    with django_capture_on_commit_callbacks(execute=True):
        rows = script_access_grant(user=buyer, scripts=scripts, duration_days=30)
    assert {row.script_id for row in rows} == {item.pk for item in scripts}
    assert set(ScriptAccess.objects.values_list("status", flat=True)) == {Status.ACTIVE}


def test_a_user_without_a_tradingview_username_cannot_be_granted_anything(buyer, script):
    buyer.tradingview_username = None
    with pytest.raises(ValidationError, match="no TradingView username"):
        script_access_grant(user=buyer, scripts=[script], duration_days=30)
    assert not ScriptAccess.objects.exists()


def test_a_switched_off_script_cannot_be_granted(buyer, db):
    script = PineScriptFactory(active=False, name="Old One")
    with pytest.raises(ValidationError, match="Old One"):
        script_access_grant(user=buyer, scripts=[script], duration_days=30)


@pytest.mark.parametrize("days", [0, -3, 1.5, True])
def test_a_duration_must_be_a_positive_whole_number_of_days(buyer, script, days):
    with pytest.raises(ValidationError, match="whole number of days"):
        script_access_grant(user=buyer, scripts=[script], duration_days=days)


def test_running_the_grant_task_twice_does_the_work_once(buyer, script, fake_tv, tv_users):
    [row] = script_access_grant(user=buyer, scripts=[script], duration_days=30)
    from pineaccess.tasks import grant_script_access

    grant_script_access.apply(args=[row.pk])
    grant_script_access.apply(args=[row.pk])

    assert len(fake_tv.requests_to("/pine_perm/add/")) == 1
    assert AccessLog.objects.filter(operation=AccessLog.Operation.GRANT).count() == 1
    row.refresh_from_db()
    assert row.status == Status.ACTIVE


def test_a_row_held_by_another_worker_is_not_touched(buyer, script, fake_tv, tv_users):
    [row] = script_access_grant(user=buyer, scripts=[script], duration_days=30)
    ScriptAccess.objects.filter(pk=row.pk).update(
        claimed_until=timezone.now() + timedelta(minutes=5), claim_token="someone"
    )
    with pytest.raises(AccessBusy):
        script_access_apply(access_id=row.pk)
    assert fake_tv.requests_to("/pine_perm/add/") == []


def test_a_lease_left_by_a_dead_worker_runs_out(buyer, script, fake_tv, tv_users):
    [row] = script_access_grant(user=buyer, scripts=[script], duration_days=30)
    ScriptAccess.objects.filter(pk=row.pk).update(
        claimed_until=timezone.now() - timedelta(seconds=1), claim_token="dead"
    )
    assert script_access_apply(access_id=row.pk).status == Status.ACTIVE


def test_an_expiry_changed_while_granting_is_granted_again(
    buyer, script, fake_tv, tv_users, monkeypatch, pineaccess_tasks
):
    [row] = script_access_grant(user=buyer, scripts=[script], duration_days=30)
    pineaccess_tasks.clear()  # only what the work below publishes
    real_grant = TradingViewClient.grant_access

    def grant_then_extend(client, *args, **kwargs):
        result = real_grant(client, *args, **kwargs)
        ScriptAccess.objects.filter(pk=row.pk).update(expires_at=row.expires_at + timedelta(days=9))
        return result

    monkeypatch.setattr(TradingViewClient, "grant_access", grant_then_extend)
    result = script_access_apply(access_id=row.pk)

    assert result.status == Status.PENDING
    assert pineaccess_tasks == [("grant_script_access", row.pk)]


def test_access_whose_time_ran_out_before_granting_is_removed_instead(
    buyer, script, fake_tv, tv_users, pineaccess_tasks
):
    [row] = script_access_grant(user=buyer, scripts=[script], duration_days=1)
    pineaccess_tasks.clear()  # only what the work below publishes
    with time_machine.travel(timezone.now() + timedelta(days=2)):
        result = script_access_apply(access_id=row.pk)
    assert result.status == Status.REMOVING
    assert pineaccess_tasks == [("remove_script_access", row.pk)]
    assert fake_tv.requests_to("/pine_perm/add/") == []
