"""Checking and changing TradingView usernames."""

import pytest
from django.core.exceptions import ValidationError

from justtrades.tests.factories import UserFactory
from pineaccess.models import AccessLog, ScriptAccess
from pineaccess.services.usernames import (
    UsernameCheck,
    tradingview_username_change,
    tradingview_username_check,
    tradingview_usernames_recheck,
)
from pineaccess.tests.factories import ScriptAccessFactory

pytestmark = pytest.mark.django_db

Status = ScriptAccess.Status


def test_a_username_tradingview_knows_is_valid_in_tradingviews_spelling(fake_tv):
    fake_tv.add_user("ChartWizard")
    fake_tv.add_user("ChartWizard2")

    check = tradingview_username_check(username="  chartwizard ")

    assert check == UsernameCheck(True, "ChartWizard", "")
    log = AccessLog.objects.get()
    assert (log.operation, log.outcome, log.actor, log.tradingview_username) == (
        "validate_username",
        "success",
        "system",
        "ChartWizard",
    )


def test_a_prefix_of_a_real_username_is_not_a_match(fake_tv):
    fake_tv.add_user("ChartWizard")
    check = tradingview_username_check(username="Chart")
    assert check.valid is False
    assert 'no TradingView user named "Chart"' in check.error
    assert AccessLog.objects.get().outcome == "failure"


def test_an_unreachable_tradingview_gives_no_verdict(unreachable_tv, db):
    check = tradingview_username_check(username="ChartWizard")
    assert check.valid is None
    assert check.username == "ChartWizard"
    assert "could not be reached" in check.error
    assert AccessLog.objects.get().detail.startswith("could not check: TradingView unreachable")


@pytest.mark.parametrize("text", ["", "   ", "two words", "a/b", "x" * 65])
def test_malformed_usernames_are_refused_without_asking_tradingview(text, fake_tv):
    check = tradingview_username_check(username=text)
    assert check.valid is False
    assert check.error
    assert fake_tv.requests == []


def test_a_user_with_no_access_can_change_to_a_real_username(buyer, fake_tv):
    fake_tv.add_user("NewName")
    tradingview_username_change(user=buyer, username="newname")
    buyer.refresh_from_db()
    assert (buyer.tradingview_username, buyer.tradingview_verified) == ("NewName", True)
    assert AccessLog.objects.filter(operation="change_username", target_user=buyer).exists()


def test_a_change_to_an_unknown_username_is_refused(buyer, fake_tv):
    with pytest.raises(ValidationError, match="no TradingView user"):
        tradingview_username_change(user=buyer, username="Ghost")
    buyer.refresh_from_db()
    assert buyer.tradingview_username == "Alice_Trades"


def test_an_unreachable_tradingview_saves_the_new_username_unverified(buyer, unreachable_tv):
    tradingview_username_change(user=buyer, username="Offline_Name")
    buyer.refresh_from_db()
    assert (buyer.tradingview_username, buyer.tradingview_verified) == ("Offline_Name", False)


@pytest.mark.parametrize("status", [Status.PENDING, Status.ACTIVE, Status.FAILED, Status.REMOVING])
def test_the_username_cannot_change_while_any_access_is_live(buyer, fake_tv, status):
    ScriptAccessFactory(user=buyer, status=status)
    fake_tv.add_user("NewName")
    with pytest.raises(ValidationError, match="cannot change while you have script access"):
        tradingview_username_change(user=buyer, username="NewName")


def test_the_username_can_change_once_all_access_is_removed(buyer, fake_tv):
    ScriptAccessFactory(user=buyer, status=Status.REMOVED)
    fake_tv.add_user("NewName")
    tradingview_username_change(user=buyer, username="NewName")
    buyer.refresh_from_db()
    assert buyer.tradingview_username == "NewName"


def test_a_username_linked_to_another_account_is_refused_whatever_its_case(buyer, stranger, fake_tv):
    fake_tv.add_user("BobCharts")
    with pytest.raises(ValidationError, match="already linked"):
        tradingview_username_change(user=buyer, username="bobcharts")


def test_unverified_usernames_are_checked_again_and_take_tradingviews_spelling(fake_tv):
    pending = UserFactory(tradingview_username="lateuser", tradingview_verified=False)
    ghost = UserFactory(tradingview_username="NoSuchPerson", tradingview_verified=False)
    fake_tv.add_user("LateUser")

    result = tradingview_usernames_recheck()

    assert (result.verified, result.not_found, result.unreachable) == (1, 1, False)
    pending.refresh_from_db()
    ghost.refresh_from_db()
    assert (pending.tradingview_username, pending.tradingview_verified) == ("LateUser", True)
    assert ghost.tradingview_verified is False


def test_the_recheck_stops_at_the_first_unreachable_answer(unreachable_tv):
    UserFactory(tradingview_username="one", tradingview_verified=False)
    UserFactory(tradingview_username="two", tradingview_verified=False)
    result = tradingview_usernames_recheck()
    assert result.unreachable is True
    assert AccessLog.objects.count() == 1
