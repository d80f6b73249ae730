"""Sync: TradingView's access list against the database, drift in three directions, fixed on request."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from justtrades.tests.factories import UserFactory
from pineaccess.models import AccessLog, ScriptAccess, SyncReport
from pineaccess.services.sync import pine_script_sync
from pineaccess.tasks import sync_pine_scripts
from pineaccess.tests.factories import PineScriptFactory, ScriptAccessFactory

pytestmark = pytest.mark.django_db

Status = ScriptAccess.Status
IN_A_MONTH = (timezone.now() + timedelta(days=30)).replace(microsecond=0)


@pytest.fixture
def drifted(script, fake_tv, buyer, stranger, tv_users):
    """One row in sync, one on TradingView only, one here only and one with another expiry."""
    carol = UserFactory(tradingview_username="Carol")
    dave = UserFactory(tradingview_username="Dave")
    ScriptAccessFactory(user=carol, script=script, expires_at=IN_A_MONTH)
    fake_tv.set_access(script.pine_id, "Carol", IN_A_MONTH)
    fake_tv.set_access(script.pine_id, "Intruder", None)
    ScriptAccessFactory(user=buyer, script=script, expires_at=IN_A_MONTH)  # Alice_Trades: only here
    ScriptAccessFactory(user=dave, script=script, expires_at=IN_A_MONTH)
    fake_tv.set_access(script.pine_id, "Dave", IN_A_MONTH + timedelta(days=5))
    # Work in flight is not drift.
    ScriptAccessFactory(user=stranger, script=script, status=Status.PENDING, expires_at=IN_A_MONTH)
    return script


def test_a_script_that_matches_is_reported_clean(script, fake_tv, buyer, tv_users):
    ScriptAccessFactory(user=buyer, script=script, expires_at=None)
    fake_tv.set_access(script.pine_id, "Alice_Trades", None)
    report = pine_script_sync(script=script)
    assert report.outcome == SyncReport.Outcome.CLEAN
    assert (report.tradingview_count, report.database_count, report.drift_count) == (1, 1, 0)


def test_drift_is_reported_in_all_three_directions_without_changing_anything(drifted, fake_tv):
    before = fake_tv.access(drifted.pine_id)

    report = pine_script_sync(script=drifted)

    assert report.outcome == SyncReport.Outcome.DRIFT
    assert [item["username"] for item in report.only_on_tradingview] == ["Intruder"]
    assert [item["username"] for item in report.only_here] == ["Alice_Trades"]
    [different] = report.different_expiry
    assert different["username"] == "Dave"
    assert datetime.fromisoformat(different["here"]) == IN_A_MONTH
    assert datetime.fromisoformat(different["there"]).date() == (IN_A_MONTH + timedelta(days=5)).date()
    assert report.fixes == []
    assert fake_tv.access(drifted.pine_id) == before
    assert SyncReport.objects.get() == report
    assert AccessLog.objects.get(operation="sync").detail.startswith("Drift found: 1 only on TradingView")


def test_fix_makes_tradingview_match_the_database(drifted, fake_tv, staff):
    report = pine_script_sync(script=drifted, fix=True, requested_by=staff)

    assert report.outcome == SyncReport.Outcome.FIXED
    assert len(report.fixes) == 3
    on_tv = {
        name: (when.replace(microsecond=0) if when else None)
        for name, when in fake_tv.access(drifted.pine_id).items()
    }
    assert on_tv == {"Carol": IN_A_MONTH, "Alice_Trades": IN_A_MONTH, "Dave": IN_A_MONTH}
    assert pine_script_sync(script=drifted).outcome == SyncReport.Outcome.CLEAN
    assert AccessLog.objects.filter(
        operation="remove", tradingview_username="Intruder", actor="staff"
    ).exists()


def test_lifetime_access_on_tradingview_is_replaced_by_the_dated_access_recorded_here(
    script, fake_tv, buyer, tv_users
):
    ScriptAccessFactory(user=buyer, script=script, expires_at=IN_A_MONTH)
    fake_tv.set_access(script.pine_id, "Alice_Trades", None)

    report = pine_script_sync(script=script, fix=True)

    assert report.different_expiry[0]["there"] is None
    assert report.outcome == SyncReport.Outcome.FIXED
    assert fake_tv.access(script.pine_id)["Alice_Trades"].replace(microsecond=0) == IN_A_MONTH


def test_a_failed_grant_that_did_reach_tradingview_is_reported_and_fixed_by_granting_again(
    script, fake_tv, buyer, tv_users
):
    row = ScriptAccessFactory(
        user=buyer, script=script, status=Status.FAILED, expires_at=IN_A_MONTH, last_error="x"
    )
    fake_tv.set_access(script.pine_id, "Alice_Trades", IN_A_MONTH)

    report = pine_script_sync(script=script, fix=True)

    assert report.only_on_tradingview[0]["note"] == "the grant is marked failed here"
    row.refresh_from_db()
    assert row.status == Status.ACTIVE


def test_access_past_its_time_is_left_to_the_expiry_sweep(script, fake_tv, buyer):
    ScriptAccessFactory(user=buyer, script=script, expires_at=timezone.now() - timedelta(hours=1))
    assert pine_script_sync(script=script).outcome == SyncReport.Outcome.CLEAN


def test_fixes_that_fail_are_reported_as_partly_fixed(script, fake_tv, buyer):
    ScriptAccessFactory(user=buyer, script=script, expires_at=IN_A_MONTH)  # not a TradingView user
    report = pine_script_sync(script=script, fix=True)
    assert report.outcome == SyncReport.Outcome.PARTLY_FIXED
    assert "Alice_Trades" in report.fix_errors[0]


def test_an_unreachable_tradingview_gives_a_failed_report_with_the_reason(unreachable_tv, db):
    script = PineScriptFactory()
    report = pine_script_sync(script=script)
    assert report.outcome == SyncReport.Outcome.FAILED
    assert "could not be reached" in report.error
    assert AccessLog.objects.get(operation="sync").outcome == "failure"


def test_the_periodic_sync_covers_every_active_script_and_fetches_missing_names(fake_tv, db):
    named = PineScriptFactory(name="Kept")
    fake_tv.add_script(named.pine_id, name="Kept")
    unnamed = PineScriptFactory(pine_id="PUB;" + "a" * 32, name="PUB;" + "a" * 32)
    fake_tv.add_script(unnamed.pine_id, name="Breakout Pro")
    PineScriptFactory(active=False)

    outcomes = sync_pine_scripts.apply().get()

    assert outcomes == {named.pine_id: "clean", unnamed.pine_id: "clean"}
    unnamed.refresh_from_db()
    assert unnamed.name == "Breakout Pro"


def test_expiry_compares_to_the_second_as_tradingview_stores_it(script, fake_tv, buyer):
    exact = datetime(2031, 5, 17, 12, 30, 45, tzinfo=UTC)
    ScriptAccessFactory(user=buyer, script=script, expires_at=exact)
    fake_tv.set_access(script.pine_id, "Alice_Trades", exact)  # answered as 12:30:45.999000
    assert pine_script_sync(script=script).outcome == SyncReport.Outcome.CLEAN


def test_an_outage_during_a_fix_leaves_the_row_pending_for_the_resume_sweep(script, fake_tv, buyer, tv_users):
    row = ScriptAccessFactory(user=buyer, script=script, expires_at=IN_A_MONTH)
    fake_tv.fail_next("/pine_perm/add/", 503, times=2)

    report = pine_script_sync(script=script, fix=True)

    assert report.outcome == SyncReport.Outcome.PARTLY_FIXED
    assert "unreachable" in report.fix_errors[0]
    row.refresh_from_db()
    assert row.status == Status.PENDING
    assert row.claim_token == ""
