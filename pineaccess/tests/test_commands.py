"""Management commands: progress, summary line, non-zero exit on failure."""

from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from pineaccess.management.progress import ProgressBar
from pineaccess.models import AccessLog, PineScript, ScriptAccess, SyncReport, TradingViewSession
from pineaccess.tests.factories import PineScriptFactory, ScriptAccessFactory

pytestmark = pytest.mark.django_db

Status = ScriptAccess.Status


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_grant_access_grants_now_and_says_so(buyer, script, fake_tv, tv_users):
    output = run("grant_access", "--user", "alice", "--script", script.pine_id, "--days", "30")
    assert "Granted 1 of 1 scripts to alice (30 days)." in output
    assert "[##############################] 1/1 grants" in output
    row = ScriptAccess.objects.get()
    assert row.status == Status.ACTIVE
    assert "Alice_Trades" in fake_tv.access(script.pine_id)
    assert AccessLog.objects.get(operation="grant").actor == "system"


def test_grant_access_fails_with_the_reason(buyer, script, fake_tv):
    with pytest.raises(CommandError, match="Granted 0 of 1"):
        run("grant_access", "--user", "alice", "--script", str(script.pk))
    assert ScriptAccess.objects.get().status == Status.FAILED


def test_grant_access_explains_unknown_users_and_scripts(buyer, script):
    with pytest.raises(CommandError, match='There is no user "nobody"'):
        run("grant_access", "--user", "nobody", "--script", script.pine_id)
    with pytest.raises(CommandError, match="no script"):
        run("grant_access", "--user", "alice", "--script", "PUB;" + "0" * 32)


def test_revoke_access_removes_on_tradingview(buyer, script, fake_tv, tv_users):
    run("grant_access", "--user", "alice", "--script", script.pine_id)
    output = run("revoke_access", "--user", "alice")
    assert "Removed 1 of 1 access rows of alice." in output
    assert ScriptAccess.objects.get().status == Status.REMOVED
    assert fake_tv.access(script.pine_id) == {}


def test_revoke_access_with_nothing_to_remove_says_so(buyer):
    assert "alice has no access to remove." in run("revoke_access", "--user", "alice")


def test_revoke_access_exits_non_zero_when_tradingview_refuses(buyer, script, fake_tv, tv_users):
    run("grant_access", "--user", "alice", "--script", script.pine_id)
    fake_tv.expire_sessions()
    fake_tv.require_captcha = True
    with pytest.raises(CommandError, match="Removed 0 of 1"):
        run("revoke_access", "--user", "alice", "--script", script.pine_id)
    assert ScriptAccess.objects.get().status == Status.REMOVING


def test_tv_expire_dry_run_changes_nothing(buyer, script):
    ScriptAccessFactory(user=buyer, script=script, expires_at=timezone.now() - timedelta(hours=1))
    output = run("tv_expire", "--dry-run")
    assert "Dry run: 1 expired access rows would be removed." in output
    assert ScriptAccess.objects.get().status == Status.ACTIVE


def test_tv_expire_removes_expired_access(buyer, script, fake_tv, tv_users):
    run("grant_access", "--user", "alice", "--script", script.pine_id, "--days", "1")
    with time_machine.travel(timezone.now() + timedelta(days=2)):
        output = run("tv_expire")
    assert "Removed 1 expired access rows; 0 not removed." in output
    assert fake_tv.access(script.pine_id) == {}


def test_tv_expire_exits_non_zero_when_tradingview_is_unreachable(buyer, script, unreachable_tv):
    ScriptAccessFactory(user=buyer, script=script, expires_at=timezone.now() - timedelta(hours=1))
    with pytest.raises(CommandError, match="0 expired access rows; 1 not removed"):
        run("tv_expire")


def test_tv_sync_reports_drift_and_fixes_it_with_fix(buyer, script, fake_tv, tv_users):
    ScriptAccessFactory(user=buyer, script=script, expires_at=None)
    output = run("tv_sync", "--script", script.pine_id)
    assert "here only: Alice_Trades (lifetime)" in output
    assert "1 differences, 0 failed. Run again with --fix to repair." in output

    fixed = run("tv_sync", "--fix")
    assert "1 fixed." in fixed
    assert fake_tv.access(script.pine_id) == {"Alice_Trades": None}
    assert SyncReport.objects.count() == 2


def test_tv_sync_exits_non_zero_when_a_script_cannot_be_compared(unreachable_tv):
    PineScriptFactory()
    with pytest.raises(CommandError, match="1 failed"):
        run("tv_sync")


def test_tv_check_passes_when_tradingview_answers(script, fake_tv):
    output = run("tv_check")
    assert f"Users with access to {script.pine_id}: 0" in output
    assert "TradingView check passed" in output


def test_tv_check_fails_clearly(fake_tv, db):
    fake_tv.two_factor_types = ["sms"]
    with pytest.raises(CommandError, match="two-factor code"):
        run("tv_check")


def test_tv_session_saves_cookies_tradingview_accepts(fake_tv, db):
    cookies = fake_tv.issue_session()
    output = run(
        "tv_session", "--sessionid", cookies["sessionid"], "--sessionid-sign", cookies["sessionid_sign"]
    )
    assert "TradingView accepted the session" in output
    assert cookies["sessionid"] not in output
    assert TradingViewSession.objects.get().source == "pasted"


def test_tv_session_refuses_cookies_tradingview_refuses(fake_tv, db):
    with pytest.raises(CommandError, match="did not accept"):
        run("tv_session", "--sessionid", "stale")


def test_tv_session_refuses_malformed_cookies(fake_tv, db):
    with pytest.raises(CommandError, match="contains spaces"):
        run("tv_session", "--sessionid", "a b")


def test_tv_load_defaults_loads_the_catalogue_and_names(fake_tv, settings, db):
    pine_id = fake_tv.add_script(name="Default Strategy")
    settings.DEFAULT_PINE_IDS = [pine_id, "not-an-id"]
    output = run("tv_load_defaults")
    assert "1 default scripts in the catalogue; 1 names fetched." in output
    assert PineScript.objects.get().name == "Default Strategy"


def test_the_progress_bar_draws_in_place_on_a_terminal():
    class Terminal(StringIO):
        def isatty(self):
            return True

    from django.core.management.base import OutputWrapper

    out = Terminal()
    bar = ProgressBar(OutputWrapper(out), label="items", width=4)
    bar(1, 2)
    bar(2, 2)
    assert out.getvalue() == "\r[##..] 1/2 items\r[####] 2/2 items\n"
