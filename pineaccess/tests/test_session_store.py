"""The TradingView session lives encrypted in the database and is shared by every client and process."""

import json

import pytest
from django.db import connection

from pineaccess.models import AccessLog, ScriptAccess, TradingViewSession
from pineaccess.services.client import tradingview_client
from pineaccess.services.session import tradingview_connection_check, tradingview_session_paste
from pineaccess.session_store import DatabaseSessionStore
from pineaccess.tests.factories import ScriptAccessFactory
from pineaccess.tradingview import SessionExpired

pytestmark = pytest.mark.django_db


def raw_cookie_column() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT cookies FROM pineaccess_tradingviewsession")
        return cursor.fetchone()[0]


def test_two_clients_share_one_sign_in_through_the_database(fake_tv, script):
    with tradingview_client() as first:
        first.list_users(script.pine_id)
    with tradingview_client() as second:
        second.list_users(script.pine_id)

    assert fake_tv.sign_in_count == 1
    session_requests = fake_tv.requests_to("/pine_perm/list_users/")
    assert session_requests[0].cookies == session_requests[1].cookies
    assert AccessLog.objects.filter(operation="login", outcome="success").count() == 1


def test_the_cookies_are_encrypted_at_rest(fake_tv, script):
    with tradingview_client() as client:
        client.list_users(script.pine_id)
    saved = DatabaseSessionStore().load()
    raw = raw_cookie_column()
    assert raw.startswith("fernet:")
    assert saved["sessionid"] not in raw
    assert TradingViewSession.objects.get().source == TradingViewSession.Source.SIGN_IN


def test_a_refused_session_signs_in_again_and_saves_the_new_one(fake_tv, script):
    with tradingview_client() as client:
        client.list_users(script.pine_id)
    old = DatabaseSessionStore().load()
    fake_tv.expire_sessions()

    with tradingview_client() as client:
        client.list_users(script.pine_id)

    assert fake_tv.sign_in_count == 2
    assert DatabaseSessionStore().load() != old


def test_clearing_forgets_the_session(fake_tv, script):
    store = DatabaseSessionStore()
    store.save({"sessionid": "abc", "sessionid_sign": "v3:x"})
    store.clear()
    assert store.load() is None
    assert TradingViewSession.objects.get().cleared_at is not None


def test_a_pasted_session_is_checked_saved_and_retries_grants_that_failed_for_want_of_one(
    fake_tv, staff, buyer, script, pineaccess_tasks
):
    stuck = ScriptAccessFactory(
        user=buyer, script=script, status=ScriptAccess.Status.FAILED, error_code="captcha_required"
    )
    wrong_name = ScriptAccessFactory(status=ScriptAccess.Status.FAILED, error_code="user_not_found")
    cookies = fake_tv.issue_session()

    retried = tradingview_session_paste(
        sessionid=cookies["sessionid"], sessionid_sign=cookies["sessionid_sign"], requested_by=staff
    )

    assert retried == 1
    assert pineaccess_tasks == [("grant_script_access", stuck.pk)]
    wrong_name.refresh_from_db()
    assert wrong_name.status == ScriptAccess.Status.FAILED
    row = TradingViewSession.objects.get()
    assert (row.source, row.saved_by) == (TradingViewSession.Source.PASTED, staff)
    assert json.loads(row.cookies) == cookies
    log = AccessLog.objects.get(operation="login")
    assert (log.actor, log.actor_user, log.outcome) == ("staff", staff, "success")
    with tradingview_client() as client:
        client.list_users(script.pine_id)
    assert fake_tv.sign_in_count == 0


def test_pasted_cookies_tradingview_refuses_are_not_saved(fake_tv, staff):
    with pytest.raises(SessionExpired, match="did not accept the pasted session cookies"):
        tradingview_session_paste(sessionid="stale", sessionid_sign="v3:stale", requested_by=staff)
    assert DatabaseSessionStore().load() is None
    assert AccessLog.objects.get(operation="login").outcome == "failure"


def test_the_connection_check_signs_in_and_lists_a_script(fake_tv, script):
    check = tradingview_connection_check()
    assert check.ok
    assert check.checked_pine_id == script.pine_id
    assert check.listed_users == 0


def test_the_connection_check_reports_a_captcha(fake_tv, db):
    fake_tv.require_captcha = True
    check = tradingview_connection_check()
    assert not check.ok
    assert "captcha" in check.error
