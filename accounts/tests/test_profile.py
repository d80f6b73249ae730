import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token

from accounts import services
from accounts.middleware import UserTimeZoneMiddleware
from pineaccess.models import ScriptAccess


@pytest.fixture
def alice_client(client, approved_user):
    client.force_login(approved_user)
    return client


def test_the_profile_needs_an_approved_login(client, db):
    response = client.get("/profile")
    assert response.status_code == 302
    assert response["Location"] == "/login?next=/profile"


def test_the_profile_shows_details_tradingview_username_status_and_redeemed_keys(
    alice_client, approved_user, make_key, script, django_assert_max_num_queries
):
    issued = make_key(scripts=[script], access_days=30)
    services.access_key_redeem(access_key_id=issued.access_key.pk, user=approved_user)
    with django_assert_max_num_queries(12):
        response = alice_client.get("/profile")
    assert response.status_code == 200
    content = response.content.decode()
    assert "Alice_Trades" in content
    assert "Approved" in content
    assert f"Key #{issued.access_key.pk}" in content
    assert "Trend Rider" in content
    assert issued.raw_key not in content


def test_a_user_saves_their_details_and_time_zone(alice_client, approved_user):
    response = alice_client.post(
        "/profile",
        {
            "email": "alice@new.example",
            "first_name": "Alice",
            "last_name": "Liddell",
            "time_zone": "Europe/Berlin",
        },
    )
    assert response["Location"] == "/profile"
    approved_user.refresh_from_db()
    assert (approved_user.email, approved_user.first_name, approved_user.time_zone) == (
        "alice@new.example",
        "Alice",
        "Europe/Berlin",
    )


def test_an_unknown_time_zone_is_refused(alice_client, approved_user):
    response = alice_client.post("/profile", {"email": "a@example.com", "time_zone": "Mars/Olympus"})
    assert response.status_code == 400
    approved_user.refresh_from_db()
    assert approved_user.time_zone == "America/Chicago"


def test_times_are_shown_in_the_users_time_zone(rf, approved_user):
    approved_user.time_zone = "Asia/Tokyo"
    seen = {}

    def view(request):
        seen["zone"] = timezone.get_current_timezone_name()
        from django.http import HttpResponse

        return HttpResponse()

    request = rf.get("/")
    request.user = approved_user
    UserTimeZoneMiddleware(view)(request)
    assert seen["zone"] == "Asia/Tokyo"
    assert timezone.get_current_timezone_name() != "Asia/Tokyo"


def test_a_user_changes_their_tradingview_username_when_no_access_depends_on_it(
    alice_client, approved_user, tradingview, script
):
    ScriptAccess.objects.create(
        user=approved_user,
        script=script,
        tradingview_username="Alice_Trades",
        status=ScriptAccess.Status.REMOVED,
    )
    tradingview.add("Alice_Charts")
    response = alice_client.post("/profile/tradingview-username", {"tradingview_username": "alice_charts"})
    assert response["Location"] == "/profile"
    approved_user.refresh_from_db()
    assert (approved_user.tradingview_username, approved_user.tradingview_verified) == ("Alice_Charts", True)


@pytest.mark.parametrize("status", ["pending", "active", "failed", "removing"])
def test_the_tradingview_username_cannot_change_while_access_is_live(
    alice_client, approved_user, tradingview, script, status
):
    ScriptAccess.objects.create(
        user=approved_user, script=script, tradingview_username="Alice_Trades", status=status
    )
    tradingview.add("Alice_Charts")
    page = alice_client.get("/profile")
    assert b"cannot change until all of that access has been removed" in page.content
    response = alice_client.post("/profile/tradingview-username", {"tradingview_username": "Alice_Charts"})
    assert response["Location"] == "/profile"
    approved_user.refresh_from_db()
    assert approved_user.tradingview_username == "Alice_Trades"


def test_a_tradingview_username_of_another_account_is_refused_in_any_case(
    alice_client, approved_user, stranger, tradingview
):
    tradingview.add("BobCharts")
    response = alice_client.post("/profile/tradingview-username", {"tradingview_username": "bobcharts"})
    assert response.status_code == 400
    assert b"already linked to another account" in response.content
    assert tradingview.asked == []


def test_an_unknown_tradingview_username_is_refused(alice_client, approved_user, tradingview):
    response = alice_client.post("/profile/tradingview-username", {"tradingview_username": "ghost_user"})
    assert response.status_code == 400
    assert b"There is no TradingView user named" in response.content
    approved_user.refresh_from_db()
    assert approved_user.tradingview_username == "Alice_Trades"


def test_a_user_creates_and_then_replaces_their_api_token(alice_client, approved_user):
    assert b"Create token" in alice_client.get("/profile").content
    alice_client.post("/profile/api-token")
    first = Token.objects.get(user=approved_user).key
    assert first.encode() in alice_client.get("/profile").content
    alice_client.post("/profile/api-token")
    second = Token.objects.get(user=approved_user).key
    assert second != first
    assert Token.objects.filter(user=approved_user).count() == 1


def test_profile_forms_need_posts(alice_client):
    assert alice_client.get("/profile/api-token").status_code == 405
    assert alice_client.get("/profile/tradingview-username").status_code == 405
