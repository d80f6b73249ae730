"""Every TradingView failure ends as a row a person can understand: failed with the reason, or retried."""

import pytest

from pineaccess.models import AccessLog, ScriptAccess
from pineaccess.services.access import script_access_apply, script_access_grant, script_access_retry
from pineaccess.tasks import grant_script_access
from pineaccess.tests.factories import PineScriptFactory
from pineaccess.tradingview import TradingViewClient, TradingViewUnavailable

pytestmark = pytest.mark.django_db

Status = ScriptAccess.Status


@pytest.fixture
def pending(buyer, script):
    [row] = script_access_grant(user=buyer, scripts=[script], duration_days=30, requested_by=buyer)
    return row


def failed(row) -> ScriptAccess:
    row.refresh_from_db()
    assert row.status == Status.FAILED
    assert row.last_error.endswith(".")
    assert row.claim_token == ""
    return row


def test_a_username_tradingview_does_not_know_fails_with_a_reason_the_buyer_can_act_on(pending, fake_tv):
    grant_script_access.apply(args=[pending.pk])

    row = failed(pending)
    assert row.error_code == "user_not_found"
    assert 'no TradingView user named "Alice_Trades"' in row.last_error
    assert row.user_facing_error == row.last_error
    # Permanent: asked once, never retried.
    assert len(fake_tv.requests_to("/username_hint/")) == 1
    log = AccessLog.objects.get(operation="grant")
    assert (log.outcome, log.actor) == ("failure", "user")


def test_a_captcha_on_sign_in_fails_the_grant_and_tells_the_operator_to_paste_a_session(
    pending, fake_tv, tv_users
):
    fake_tv.require_captcha = True
    grant_script_access.apply(args=[pending.pk])

    row = failed(pending)
    assert row.error_code == "captcha_required"
    assert "tv_session" in row.last_error
    assert "you do not need to do anything" in row.user_facing_error
    assert AccessLog.objects.filter(operation="login", outcome="failure", detail__contains="captcha").exists()
    assert fake_tv.sign_in_count == 1


def test_a_two_factor_request_fails_the_grant_with_the_kind_of_code(pending, fake_tv, tv_users):
    fake_tv.two_factor_types = ["totp"]
    grant_script_access.apply(args=[pending.pk])
    row = failed(pending)
    assert row.error_code == "two_factor_required"
    assert "two-factor code (totp)" in row.last_error


def test_a_wrong_password_fails_the_grant(pending, fake_tv, tv_users, settings):
    settings.TRADINGVIEW_PASSWORD = "not it"
    grant_script_access.apply(args=[pending.pk])
    assert failed(pending).error_code == "invalid_credentials"


def test_a_session_refused_right_after_signing_in_fails_as_session_expired(pending, fake_tv, tv_users):
    fake_tv.refuse_all_sessions = True
    grant_script_access.apply(args=[pending.pk])
    assert failed(pending).error_code == "session_expired"


def test_a_script_tradingview_does_not_manage_fails_with_tradingviews_words(buyer, fake_tv, tv_users):
    unknown = PineScriptFactory()
    [row] = script_access_grant(user=buyer, scripts=[unknown], duration_days=30)
    grant_script_access.apply(args=[row.pk])
    row = failed(row)
    assert row.error_code == "script_not_accessible"
    assert "Wrong credentials or pineId" in row.last_error


def test_an_outage_is_retried_and_the_grant_succeeds_when_tradingview_is_back(pending, fake_tv, tv_users):
    # The client tries twice per call (settings in conftest), so this fails the task's first run only.
    fake_tv.fail_next("/username_hint/", 503, times=2)

    grant_script_access.apply(args=[pending.pk])

    pending.refresh_from_db()
    assert pending.status == Status.ACTIVE
    assert pending.last_error == ""
    outcomes = list(
        AccessLog.objects.filter(operation="grant").order_by("pk").values_list("outcome", "detail")
    )
    assert outcomes[0][0] == "failure"
    assert outcomes[0][1].endswith("will retry")
    assert outcomes[1][0] == "success"


def test_rate_limiting_is_retried_too(pending, fake_tv, tv_users):
    fake_tv.fail_next("/pine_perm/add/", 429, times=2)
    grant_script_access.apply(args=[pending.pk])
    pending.refresh_from_db()
    assert pending.status == Status.ACTIVE
    assert len(fake_tv.requests_to("/pine_perm/add/")) == 3


def test_an_outage_that_outlasts_every_retry_fails_with_the_reason(pending, unreachable_tv):
    grant_script_access.apply(args=[pending.pk])
    row = failed(pending)
    assert row.error_code == "trading_view_unavailable"
    assert "could not be reached" in row.last_error
    assert row.attempts == grant_script_access.max_retries + 1


def test_a_transient_error_before_the_last_attempt_leaves_the_row_pending_with_the_reason(
    pending, unreachable_tv
):
    with pytest.raises(TradingViewUnavailable):
        script_access_apply(access_id=pending.pk, final_attempt=False)
    pending.refresh_from_db()
    assert pending.status == Status.PENDING
    assert "could not be reached" in pending.last_error
    assert pending.claimed_until is None


def test_a_failed_grant_can_be_retried_and_then_succeeds(
    pending, fake_tv, tv_users, eager_tasks, django_capture_on_commit_callbacks
):
    fake_tv.require_captcha = True
    grant_script_access.apply(args=[pending.pk])
    failed(pending)
    fake_tv.require_captcha = False

    with django_capture_on_commit_callbacks(execute=True):
        assert script_access_retry(access=pending) is True

    pending.refresh_from_db()
    assert (pending.status, pending.last_error, pending.error_code) == (Status.ACTIVE, "", "")


def test_a_grant_revoked_while_it_failed_is_still_removed(
    pending, fake_tv, tv_users, monkeypatch, pineaccess_tasks
):
    pineaccess_tasks.clear()  # only what the work below publishes, not the fixtures' grants
    fake_tv.require_captcha = True
    real = TradingViewClient.resolve_username

    def revoke_meanwhile(client, text):
        ScriptAccess.objects.filter(pk=pending.pk).update(status=Status.REMOVING)
        return real(client, text)

    monkeypatch.setattr(TradingViewClient, "resolve_username", revoke_meanwhile)
    script_access_apply(access_id=pending.pk)
    pending.refresh_from_db()
    assert pending.status == Status.REMOVING
    assert pineaccess_tasks == [("remove_script_access", pending.pk)]
