import pytest
from django.http import HttpResponse
from django.test import RequestFactory
from django.views import View

from accounts.decorators import ApprovedRequiredMixin, approved_required
from justtrades.tests.factories import PASSWORD


def log_in(client, username: str, password: str = PASSWORD, **extra):
    return client.post("/login", {"username": username, "password": password}, **extra)


def test_an_approved_user_logs_in_and_lands_on_the_dashboard(client, approved_user):
    response = log_in(client, "alice")
    assert response.status_code == 302
    assert response["Location"] == "/dashboard"
    assert int(client.session["_auth_user_id"]) == approved_user.pk


def test_login_follows_a_safe_next_address_only(client, approved_user):
    assert log_in(client, "alice", next="/profile")["Location"] == "/dashboard"  # next is a form field
    response = client.post("/login?next=/profile", {"username": "alice", "password": PASSWORD})
    assert response["Location"] == "/profile"
    client.logout()
    response = client.post(
        "/login", {"username": "alice", "password": PASSWORD, "next": "https://evil.example/"}
    )
    assert response["Location"] == "/dashboard"


def test_a_pending_user_is_told_to_wait_for_approval_and_is_not_logged_in(client, pending_user):
    response = log_in(client, "penny")
    assert response.status_code == 403
    assert b"Waiting for approval" in response.content
    assert "_auth_user_id" not in client.session


def test_a_rejected_user_gets_their_own_message(client, rejected_user):
    response = log_in(client, "rex")
    assert response.status_code == 403
    assert b"not approved" in response.content
    assert "_auth_user_id" not in client.session


def test_a_rejected_account_is_not_revealed_to_someone_without_its_password(client, rejected_user):
    response = log_in(client, "rex", "a-wrong-password")
    assert response.status_code == 400
    assert b"do not match an account" in response.content
    assert b"not approved" not in response.content


def test_a_wrong_password_gets_a_plain_refusal(client, approved_user):
    response = log_in(client, "alice", "a-wrong-password")
    assert response.status_code == 400
    assert b"do not match an account" in response.content
    assert "_auth_user_id" not in client.session


def test_logout_is_a_post_and_ends_the_session(client, approved_user):
    client.force_login(approved_user)
    assert client.get("/logout").status_code == 405
    response = client.post("/logout")
    assert response["Location"] == "/"
    assert "_auth_user_id" not in client.session


def test_the_login_page_offers_the_fields_the_spec_names(client, db):
    response = client.get("/login")
    assert response.status_code == 200
    assert b'name="username"' in response.content
    assert b'name="password"' in response.content


# --------------------------------------------------------------------------------------------- rate limits


def test_repeated_failed_logins_for_one_account_are_answered_with_429_even_from_other_addresses(
    client, approved_user, settings
):
    settings.LOGIN_RATE_LIMIT = "3/900"
    for attempt in range(3):
        assert log_in(client, "alice", "wrong", REMOTE_ADDR=f"10.0.0.{attempt}").status_code == 400
    response = log_in(client, "alice", PASSWORD, REMOTE_ADDR="10.0.0.99")
    assert response.status_code == 429
    assert b"Too many attempts" in response.content
    assert 0 < int(response["Retry-After"]) <= 900
    assert "_auth_user_id" not in client.session


def test_repeated_failed_logins_from_one_address_are_limited_across_accounts(client, approved_user, settings):
    settings.LOGIN_RATE_LIMIT = "3/900"
    for name in ("x1", "x2", "x3"):
        log_in(client, name, "wrong")
    assert log_in(client, "alice").status_code == 429
    assert log_in(client, "alice", REMOTE_ADDR="192.0.2.10").status_code == 302


def test_a_successful_login_clears_the_accounts_failures(client, approved_user, settings):
    settings.LOGIN_RATE_LIMIT = "3/900"
    log_in(client, "alice", "wrong", REMOTE_ADDR="10.0.0.1")
    log_in(client, "alice", "wrong", REMOTE_ADDR="10.0.0.2")
    assert log_in(client, "alice", REMOTE_ADDR="10.0.0.3").status_code == 302
    client.logout()
    log_in(client, "alice", "wrong", REMOTE_ADDR="10.0.0.4")
    log_in(client, "alice", "wrong", REMOTE_ADDR="10.0.0.5")
    assert log_in(client, "alice", REMOTE_ADDR="10.0.0.6").status_code == 302


def test_letter_case_does_not_give_an_account_more_attempts(client, approved_user, settings):
    settings.LOGIN_RATE_LIMIT = "2/900"
    log_in(client, "alice", "wrong", REMOTE_ADDR="10.0.0.1")
    log_in(client, "ALICE", "wrong", REMOTE_ADDR="10.0.0.2")
    assert log_in(client, "alice", REMOTE_ADDR="10.0.0.3").status_code == 429


def test_repeated_wrong_access_keys_are_answered_with_429(client, make_key, settings):
    settings.KEY_RATE_LIMIT = "3/900"
    issued = make_key()
    for _ in range(3):
        assert client.post("/validate-key", {"key": "JT-ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ"}).status_code == 302
    response = client.post("/validate-key", {"key": issued.raw_key})
    assert response.status_code == 429
    assert b"Too many attempts" in response.content
    assert "Retry-After" in response


def test_failed_attempts_behind_a_trusted_proxy_count_per_client_address(client, approved_user, settings):
    settings.LOGIN_RATE_LIMIT = "2/900"
    settings.TRUSTED_PROXIES = ["10.9.0.0/16"]
    behind_proxy = {"REMOTE_ADDR": "10.9.0.1"}
    for name in ("x1", "x2"):
        log_in(client, name, "wrong", HTTP_X_FORWARDED_FOR="198.51.100.7", **behind_proxy)
    assert log_in(client, "alice", HTTP_X_FORWARDED_FOR="198.51.100.7", **behind_proxy).status_code == 429
    assert log_in(client, "alice", HTTP_X_FORWARDED_FOR="198.51.100.8", **behind_proxy).status_code == 302


def test_a_forwarded_address_from_an_untrusted_peer_is_ignored(client, approved_user, settings):
    settings.LOGIN_RATE_LIMIT = "2/900"
    for index in range(2):
        log_in(client, f"x{index}", "wrong", HTTP_X_FORWARDED_FOR=f"198.51.100.{index}")
    assert log_in(client, "alice", HTTP_X_FORWARDED_FOR="198.51.100.77").status_code == 429


# ------------------------------------------------------------------------------------ approved_required


@approved_required
def members_only(request):
    return HttpResponse("members")


class MembersOnly(ApprovedRequiredMixin, View):
    def get(self, request):
        return HttpResponse("members")


@pytest.mark.parametrize("view", [members_only, MembersOnly.as_view()])
def test_approved_required_sends_visitors_to_login_and_stops_pending_users(
    view, rf: RequestFactory, approved_user, pending_user
):
    from django.contrib.auth.models import AnonymousUser

    request = rf.get("/members?x=1")
    request.user = AnonymousUser()
    response = view(request)
    assert response.status_code == 302
    assert response["Location"] == "/login?next=/members%3Fx%3D1"

    request = rf.get("/members")
    request.user = pending_user
    response = view(request)
    assert response.status_code == 403
    assert b"Waiting for approval" in response.content

    request = rf.get("/members")
    request.user = approved_user
    assert view(request).content == b"members"


def test_approved_required_takes_a_login_address(rf):
    from django.contrib.auth.models import AnonymousUser

    view = approved_required(login_url="/elsewhere")(members_only)
    request = rf.get("/members")
    request.user = AnonymousUser()
    assert view(request)["Location"].startswith("/elsewhere?next=")
