import pytest
from django.contrib.messages import get_messages
from django.test import Client

from accounts.models import AccessKey, ApprovalLog, User
from accounts.tests.test_access_keys import database_text
from accounts.views import SESSION_ACCESS_KEY
from justtrades.tests.factories import PASSWORD
from pineaccess.models import ScriptAccess


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def registration(**fields) -> dict:
    return {
        "username": "nina",
        "email": "nina@example.com",
        "password1": "Trade-Setups-2026!",
        "password2": "Trade-Setups-2026!",
        "tradingview_username": "nina_tv",
        **fields,
    }


@pytest.fixture
def keyed_client(client, make_key, script):
    """A visitor whose valid key (granting the script for 30 days) has been accepted."""
    issued = make_key(scripts=[script], access_days=30)
    response = client.post("/validate-key", {"key": issued.raw_key})
    assert response.status_code == 302
    client.issued = issued
    return client


def test_the_front_page_offers_the_key_form_and_a_login_link(client, db):
    response = client.get("/")
    assert response.status_code == 200
    assert b'action="/validate-key"' in response.content
    assert b'name="key"' in response.content
    assert b'href="/login"' in response.content


def test_a_valid_key_starts_registration_and_is_remembered_by_id_only(client, make_key):
    issued = make_key()
    response = client.post("/validate-key", {"key": f"  {issued.raw_key.lower()} "})
    assert response.status_code == 302
    assert response["Location"] == "/register"
    assert client.session[SESSION_ACCESS_KEY] == issued.access_key.pk
    assert issued.raw_key not in str(dict(client.session))


@pytest.mark.parametrize(
    ("state", "words"),
    [("wrong", "not valid"), ("used", "already been used"), ("revoked", "revoked"), ("expired", "expired")],
)
def test_a_refused_key_gets_a_message_that_says_why(client, make_key, staff, state, words):
    from datetime import timedelta

    from django.utils import timezone

    from accounts import services
    from justtrades.tests.factories import UserFactory

    issued = make_key()
    typed = issued.raw_key
    if state == "wrong":
        typed = "JT-ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ"
    elif state == "used":
        services.access_key_redeem(access_key_id=issued.access_key.pk, user=UserFactory())
    elif state == "revoked":
        services.access_keys_revoke(access_keys=[issued.access_key], revoked_by=staff)
    else:
        AccessKey.objects.filter(pk=issued.access_key.pk).update(
            valid_until=timezone.now() - timedelta(days=1)
        )
    response = client.post("/validate-key", {"key": typed})
    assert response.status_code == 302
    assert response["Location"] == "/"
    [message] = messages_of(response)
    assert words in message
    assert SESSION_ACCESS_KEY not in client.session


def test_an_empty_key_is_asked_for_again(client, db):
    response = client.post("/validate-key", {"key": ""})
    assert response["Location"] == "/"
    assert messages_of(response) == ["Enter the access key you were given."]


def test_validate_key_only_accepts_posts(client, db):
    assert client.get("/validate-key").status_code == 405


def test_registration_needs_a_key_while_registration_is_closed(client, db):
    response = client.get("/register")
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert "access key" in messages_of(response)[0]


def test_the_registration_page_shows_what_the_key_grants(keyed_client, script):
    response = keyed_client.get("/register")
    assert response.status_code == 200
    assert script.name.encode() in response.content
    assert b"30 days" in response.content
    for field in ("username", "email", "password1", "password2", "tradingview_username"):
        assert f'name="{field}"'.encode() in response.content


def test_registering_with_a_key_creates_an_approved_account_redeems_the_key_and_grants_its_scripts(
    keyed_client, script, tradingview
):
    tradingview.add("Nina_TV")
    response = keyed_client.post("/register", registration())
    assert response.status_code == 302
    assert response["Location"] == "/manage"

    user = User.objects.get(username="nina")
    assert user.is_approved
    assert user.is_active
    assert user.tradingview_username == "Nina_TV"  # TradingView's spelling
    assert user.tradingview_verified
    assert user.check_password("Trade-Setups-2026!")
    key = AccessKey.objects.get(pk=keyed_client.issued.access_key.pk)
    assert (key.state, key.redeemed_by) == (AccessKey.State.REDEEMED, user)
    row = ScriptAccess.objects.get(user=user)
    assert (row.script, row.status, row.tradingview_username) == (script, "pending", "Nina_TV")
    assert ApprovalLog.objects.get(user=user).access_key == key
    assert int(keyed_client.session["_auth_user_id"]) == user.pk
    assert SESSION_ACCESS_KEY not in keyed_client.session


def test_the_raw_key_is_nowhere_in_the_database_after_a_whole_registration(keyed_client, tradingview):
    tradingview.add("nina_tv")
    keyed_client.post("/register", registration())
    raw = keyed_client.issued.raw_key
    stored = database_text()
    assert raw not in stored
    assert raw.replace("-", "")[2:] not in stored


def test_passwords_are_hashed_with_argon2(keyed_client, tradingview, settings):
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.Argon2PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]
    tradingview.add("nina_tv")
    keyed_client.post("/register", registration())
    assert User.objects.get(username="nina").password.startswith("argon2")


def test_a_key_without_auto_approve_creates_a_pending_account_that_waits(client, make_key, tradingview):
    issued = make_key(auto_approve=False)
    client.post("/validate-key", {"key": issued.raw_key})
    tradingview.add("nina_tv")
    response = client.post("/register", registration())
    assert response.status_code == 200
    assert b"Waiting for approval" in response.content
    user = User.objects.get(username="nina")
    assert user.approval_status == User.ApprovalStatus.PENDING
    assert "_auth_user_id" not in client.session
    assert AccessKey.objects.get(pk=issued.access_key.pk).redeemed_by == user


def test_open_registration_creates_pending_accounts_without_a_key(client, db, settings, tradingview):
    settings.REGISTRATION_OPEN = True
    tradingview.add("nina_tv")
    assert client.get("/register").status_code == 200
    response = client.post("/register", registration())
    assert b"Waiting for approval" in response.content
    user = User.objects.get(username="nina")
    assert user.approval_status == User.ApprovalStatus.PENDING
    assert not user.redeemed_access_keys.exists()


def test_a_tradingview_username_tradingview_does_not_know_is_refused_and_the_key_stays_unused(
    keyed_client, tradingview
):
    response = keyed_client.post("/register", registration(tradingview_username="nobody_here"))
    assert response.status_code == 400
    assert b"There is no TradingView user named" in response.content
    assert not User.objects.filter(username="nina").exists()
    assert AccessKey.objects.get(pk=keyed_client.issued.access_key.pk).state == AccessKey.State.UNUSED


def test_when_tradingview_cannot_be_reached_the_account_is_created_unverified(keyed_client, tradingview):
    tradingview.reachable = False
    response = keyed_client.post("/register", registration())
    assert response.status_code == 302
    user = User.objects.get(username="nina")
    assert (user.tradingview_username, user.tradingview_verified) == ("nina_tv", False)
    assert any("could not be reached" in message for message in messages_of(response))


def test_a_tradingview_username_taken_in_another_case_is_refused(keyed_client, tradingview, approved_user):
    tradingview.add("Alice_Trades")
    response = keyed_client.post("/register", registration(tradingview_username="ALICE_trades"))
    assert response.status_code == 400
    assert b"already linked to another account" in response.content
    assert tradingview.asked == []  # refused before asking TradingView
    assert not User.objects.filter(username="nina").exists()


def test_a_username_taken_in_another_case_is_refused(keyed_client, tradingview, approved_user):
    tradingview.add("nina_tv")
    response = keyed_client.post("/register", registration(username="ALICE"))
    assert response.status_code == 400
    assert b"A user with that username already exists" in response.content


def test_weak_and_mismatched_passwords_are_refused(keyed_client, tradingview):
    tradingview.add("nina_tv")
    response = keyed_client.post("/register", registration(password1="password", password2="password"))
    assert response.status_code == 400
    assert b"too common" in response.content
    response = keyed_client.post("/register", registration(password2="Something-Else-2026!"))
    assert b"didn" in response.content
    assert b"match" in response.content
    assert not User.objects.filter(username="nina").exists()


def test_a_key_used_elsewhere_meanwhile_stops_the_registration_and_creates_nothing(keyed_client, tradingview):
    from accounts import services
    from justtrades.tests.factories import UserFactory

    services.access_key_redeem(access_key_id=keyed_client.issued.access_key.pk, user=UserFactory())
    tradingview.add("nina_tv")
    response = keyed_client.post("/register", registration())
    assert response["Location"] == "/"
    assert any("already been used" in message for message in messages_of(response))
    assert not User.objects.filter(username="nina").exists()


def test_forms_refuse_posts_without_a_csrf_token(make_key, tradingview):
    browser = Client(enforce_csrf_checks=True)
    issued = make_key()
    assert browser.post("/validate-key", {"key": issued.raw_key}).status_code == 403
    assert browser.post("/login", {"username": "x", "password": "y"}).status_code == 403

    page = browser.get("/")
    token = page.cookies["csrftoken"].value
    accepted = browser.post("/validate-key", {"key": issued.raw_key, "csrfmiddlewaretoken": token})
    assert accepted.status_code == 302
    assert accepted["Location"] == "/register"


def test_a_signed_in_user_redeems_another_key_straight_into_their_account(
    client, approved_user, make_key, other_script
):
    client.force_login(approved_user)
    issued = make_key(scripts=[other_script], access_days=7)
    response = client.post("/validate-key", {"key": issued.raw_key})
    assert response["Location"] == "/manage"
    assert AccessKey.objects.get(pk=issued.access_key.pk).redeemed_by == approved_user
    assert ScriptAccess.objects.get(user=approved_user).script == other_script


def test_a_signed_in_user_without_a_tradingview_username_keeps_the_key_unused(
    client, staff, make_key, script
):
    client.force_login(staff)
    issued = make_key(scripts=[script])
    response = client.post("/validate-key", {"key": issued.raw_key})
    assert response["Location"] == "/profile"
    assert "no TradingView username" in messages_of(response)[0]
    assert AccessKey.objects.get(pk=issued.access_key.pk).state == AccessKey.State.UNUSED


def test_a_signed_in_user_is_sent_from_registration_to_their_profile(client, approved_user):
    client.force_login(approved_user)
    assert client.get("/register")["Location"] == "/profile"


def test_the_password_typed_at_registration_is_never_logged(keyed_client, tradingview, caplog):
    tradingview.add("nina_tv")
    with caplog.at_level("DEBUG"):
        keyed_client.post("/register", registration())
    assert "Trade-Setups-2026!" not in caplog.text
    assert PASSWORD not in caplog.text


def test_a_key_that_grants_nothing_says_so_instead_of_claiming_a_grant(client, approved_user, make_key):
    client.force_login(approved_user)
    response = client.post("/validate-key", {"key": make_key().raw_key})
    assert response["Location"] == "/manage"
    assert messages_of(response) == ["Key accepted. It grants no scripts, so nothing changed on TradingView."]


def test_registration_asks_the_real_tradingview_client_for_the_username(keyed_client, settings):
    from pineaccess.tests.fake_tradingview import running_fake_tradingview

    with running_fake_tradingview() as fake:
        settings.TRADINGVIEW_URL = fake.base_url
        settings.TRADINGVIEW_MAX_ATTEMPTS = 1
        fake.add_user("Nina_TV")
        response = keyed_client.post("/register", registration(tradingview_username="NINA_tv"))
    assert response.status_code == 302
    user = User.objects.get(username="nina")
    assert (user.tradingview_username, user.tradingview_verified) == ("Nina_TV", True)
