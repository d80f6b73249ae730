"""The operator console: script actions, access actions and filters, read-only logs, the session page."""

from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.utils import timezone

from justtrades.tests.factories import UserFactory
from pineaccess.models import AccessLog, PineScript, ScriptAccess, SyncReport, TradingViewSession
from pineaccess.tests.factories import PineScriptFactory, ScriptAccessFactory

pytestmark = pytest.mark.django_db

Status = ScriptAccess.Status


@pytest.fixture
def console(client, staff):
    client.force_login(staff)
    return client


def act(console, url, action, rows, **extra):
    data = {"action": action, ACTION_CHECKBOX_NAME: [row.pk for row in rows], **extra}
    return console.post(url, data, follow=True)


def test_every_pineaccess_page_of_the_console_opens(console, buyer):
    row = ScriptAccessFactory(user=buyer)
    AccessLog.objects.create(operation="grant", actor="system", outcome="success")
    report = SyncReport.objects.create(
        script=row.script,
        pine_id=row.script.pine_id,
        outcome="drift",
        only_here=[{"username": "A", "expires_at": None, "access_id": 1}],
    )
    for url in [
        "/admin/pineaccess/pinescript/",
        f"/admin/pineaccess/pinescript/{row.script.pk}/change/",
        "/admin/pineaccess/pinescript/add/",
        "/admin/pineaccess/scriptaccess/",
        f"/admin/pineaccess/scriptaccess/{row.pk}/change/",
        "/admin/pineaccess/scriptaccess/?expiring=7d",
        "/admin/pineaccess/scriptaccess/?q=Alice",
        "/admin/pineaccess/accesslog/",
        "/admin/pineaccess/syncreport/",
        f"/admin/pineaccess/syncreport/{report.pk}/change/",
        "/admin/pineaccess/tradingviewsession/",
    ]:
        assert console.get(url).status_code == 200, url


def test_grant_to_users_asks_for_users_and_days_then_queues_grants(
    console, buyer, stranger, staff, pineaccess_tasks
):
    scripts = [PineScriptFactory(), PineScriptFactory()]
    url = "/admin/pineaccess/pinescript/"

    form_page = act(console, url, "grant_to_users", scripts)
    assert b"Grant scripts to users" in form_page.content
    assert b"Alice_Trades" in form_page.content

    done = act(console, url, "grant_to_users", scripts, apply="1", users=[buyer.pk, stranger.pk], days="30")
    assert b"Queued 4 grants (30 days)" in done.content
    assert ScriptAccess.objects.filter(status=Status.PENDING, requested_by=staff).count() == 4
    assert len(pineaccess_tasks) == 4


def test_grant_to_users_without_days_is_lifetime(console, buyer, pineaccess_tasks):
    script = PineScriptFactory()
    act(
        console,
        "/admin/pineaccess/pinescript/",
        "grant_to_users",
        [script],
        apply="1",
        users=[buyer.pk],
        days="",
    )
    assert ScriptAccess.objects.get().expires_at is None


def test_sync_now_reports_each_script(console, fake_tv, script, buyer):
    ScriptAccessFactory(user=buyer, script=script)
    page = act(console, "/admin/pineaccess/pinescript/", "sync_now", [script])
    assert b"Drift found (1 differences)" in page.content
    assert SyncReport.objects.get().requested_by.is_staff


def test_deactivate_and_remove_all_confirms_then_switches_off(console, buyer, pineaccess_tasks):
    row = ScriptAccessFactory(user=buyer)
    url = "/admin/pineaccess/pinescript/"
    confirm = act(console, url, "deactivate_and_remove_all", [row.script])
    assert b"Everyone&#x27;s access is removed on TradingView" in confirm.content
    assert PineScript.objects.get().active

    act(console, url, "deactivate_and_remove_all", [row.script], apply="1")
    row.refresh_from_db()
    assert row.status == Status.REMOVING
    assert not PineScript.objects.get().active
    assert pineaccess_tasks == [("remove_everyone_from_script", row.script.pk)]


def test_a_script_with_grants_cannot_be_deleted_from_the_console(console, buyer):
    row = ScriptAccessFactory(user=buyer)
    assert console.get(f"/admin/pineaccess/pinescript/{row.script.pk}/delete/").status_code == 403


def test_the_expiring_within_7_days_filter(console, buyer):
    now = timezone.now()
    soon = ScriptAccessFactory(user=buyer, expires_at=now + timedelta(days=3))
    ScriptAccessFactory(expires_at=now + timedelta(days=30))
    ScriptAccessFactory(expires_at=None)
    page = console.get("/admin/pineaccess/scriptaccess/?expiring=7d")
    assert list(page.context["cl"].queryset) == [soon]


def test_bulk_extend_adds_days_to_each_access(console, buyer, stranger, pineaccess_tasks):
    expiry = (timezone.now() + timedelta(days=2)).replace(microsecond=0)
    rows = [
        ScriptAccessFactory(user=buyer, expires_at=expiry),
        ScriptAccessFactory(user=stranger, expires_at=expiry),
    ]
    url = "/admin/pineaccess/scriptaccess/"
    assert b"Extend access" in act(console, url, "extend", rows).content

    page = act(console, url, "extend", rows, apply="1", days="10")

    assert b"Extended 2 access rows" in page.content
    for row in rows:
        row.refresh_from_db()
        assert (row.status, row.expires_at) == (Status.PENDING, expiry + timedelta(days=10))


def test_bulk_extend_needs_days_or_lifetime(console, buyer):
    row = ScriptAccessFactory(user=buyer)
    page = act(console, "/admin/pineaccess/scriptaccess/", "extend", [row], apply="1", days="")
    assert b"Enter a number of days, or tick lifetime" in page.content


def test_revoke_starts_removal(console, buyer, pineaccess_tasks):
    row = ScriptAccessFactory(user=buyer)
    page = act(console, "/admin/pineaccess/scriptaccess/", "revoke", [row])
    assert b"Removing 1 access rows" in page.content
    assert pineaccess_tasks == [("remove_script_access", row.pk)]


def test_the_audit_log_is_read_only(console):
    log = AccessLog.objects.create(operation="grant", actor="system", outcome="success")
    assert console.get("/admin/pineaccess/accesslog/add/").status_code == 403
    assert console.post(f"/admin/pineaccess/accesslog/{log.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AccessLog.objects.filter(pk=log.pk).exists()


def test_pasting_a_session_in_the_console_saves_it_when_tradingview_accepts_it(console, fake_tv, staff):
    cookies = fake_tv.issue_session()
    page = console.post(
        "/admin/pineaccess/tradingviewsession/",
        {"sessionid": cookies["sessionid"], "sessionid_sign": cookies["sessionid_sign"]},
        follow=True,
    )
    assert b"TradingView accepted the session" in page.content
    assert cookies["sessionid"].encode() not in page.content
    assert TradingViewSession.objects.get().saved_by == staff


def test_pasted_cookies_tradingview_refuses_are_explained(console, fake_tv):
    page = console.post(
        "/admin/pineaccess/tradingviewsession/", {"sessionid": "old", "sessionid_sign": "v3:old"}
    )
    assert b"did not accept the pasted session cookies" in page.content
    assert not TradingViewSession.objects.exists()


def test_only_superusers_reach_the_session_page(client, db):
    clerk = UserFactory(is_staff=True)
    client.force_login(clerk)
    assert client.get("/admin/pineaccess/tradingviewsession/").status_code == 403


def test_switch_on_again_reactivates_scripts(console, db):
    script = PineScriptFactory(active=False)
    act(console, "/admin/pineaccess/pinescript/", "switch_on", [script])
    script.refresh_from_db()
    assert script.active
