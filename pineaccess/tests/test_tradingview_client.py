"""The TradingView client against a fake TradingView over real HTTP on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from pineaccess.tests.fake_tradingview import (
    SELLER_PASSWORD,
    SELLER_USERNAME,
    FakeTradingView,
    running_fake_tradingview,
)
from pineaccess.tradingview import (
    AlreadyHasAccess,
    CaptchaRequired,
    GrantAction,
    InvalidCredentials,
    MemorySessionStore,
    RateLimited,
    ScriptNotAccessible,
    SessionExpired,
    TradingViewClient,
    TradingViewError,
    TradingViewUnavailable,
    TwoFactorRequired,
    UnexpectedAnswer,
    UserNotFound,
    client_from_settings,
    format_expiration,
    parse_expiration,
)

EXPIRY = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
LATER = datetime(2027, 6, 30, 23, 59, 59, tzinfo=UTC)
LIST_USERS = "/pine_perm/list_users/"
ADD = "/pine_perm/add/"
MODIFY = "/pine_perm/modify_user_expiration/"
REMOVE = "/pine_perm/remove/"
LIST_SCRIPTS = "/pine_perm/list_scripts/"
SIGN_IN = "/accounts/signin/"


@pytest.fixture
def fake() -> Iterator[FakeTradingView]:
    with running_fake_tradingview() as fake:
        yield fake


@pytest.fixture
def store() -> MemorySessionStore:
    return MemorySessionStore()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def tv(fake: FakeTradingView, store: MemorySessionStore, sleeps: list[float]) -> Iterator[TradingViewClient]:
    with fake.client(store, sleep=sleeps.append) as tv:
        yield tv


@pytest.fixture
def script(fake: FakeTradingView) -> str:
    return fake.add_script(name="Trend Rider")


def assert_readable(error: TradingViewError) -> None:
    """An error has a short audit summary and a full-sentence message."""
    assert error.summary
    assert len(error.summary) <= 200
    assert str(error).endswith(".")
    assert len(str(error)) > len(error.summary)


# --------------------------------------------------------------------------------------------- session


def test_sign_in_posts_the_form_with_browser_headers_and_saves_only_the_session_cookies(
    tv: TradingViewClient, fake: FakeTradingView, store: MemorySessionStore
) -> None:
    assert tv.sign_in() == SELLER_USERNAME

    [request] = fake.requests_to(SIGN_IN)
    assert request.form == {"username": SELLER_USERNAME, "password": SELLER_PASSWORD, "remember": "on"}
    assert request.headers["origin"] == fake.base_url
    assert request.headers["referer"] == f"{fake.base_url}/"
    assert request.headers["user-agent"].startswith("Mozilla/5.0 (Windows NT 10.0")
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    saved = store.load()
    assert saved is not None
    assert set(saved) == {"sessionid", "sessionid_sign"}
    assert fake.sessions[saved["sessionid"]] == saved["sessionid_sign"]


def test_authenticated_calls_send_exactly_the_session_cookie_and_the_ajax_headers(
    tv: TradingViewClient, fake: FakeTradingView, store: MemorySessionStore, script: str
) -> None:
    tv.list_scripts()

    saved = store.load()
    assert saved is not None
    [request] = fake.requests_to(LIST_SCRIPTS)
    assert (
        request.headers["cookie"]
        == f"sessionid={saved['sessionid']}; sessionid_sign={saved['sessionid_sign']}"
    )
    assert request.headers["x-requested-with"] == "XMLHttpRequest"
    assert request.headers["origin"] == fake.base_url
    assert request.headers["referer"] == f"{fake.base_url}/"


def test_a_second_client_with_the_same_store_reuses_the_session_without_signing_in(
    fake: FakeTradingView, store: MemorySessionStore, script: str
) -> None:
    with fake.client(store) as first:
        first.list_scripts()
    with fake.client(store) as second:
        assert second.list_scripts() == [script]

    assert fake.sign_in_count == 1


@pytest.mark.parametrize("expired_answer", ["401", "403", "html"])
def test_an_expired_session_signs_in_again_once_and_retries_the_call(
    tv: TradingViewClient, fake: FakeTradingView, store: MemorySessionStore, script: str, expired_answer: str
) -> None:
    tv.list_scripts()
    old_cookies = store.load()
    fake.expire_sessions()
    fake.expired_answer = expired_answer

    assert tv.list_scripts() == [script]

    assert fake.sign_in_count == 2
    assert store.load() != old_cookies
    assert len(fake.requests_to(LIST_SCRIPTS)) == 3


def test_a_session_saved_by_another_process_is_used_instead_of_signing_in(
    tv: TradingViewClient, fake: FakeTradingView, store: MemorySessionStore, script: str
) -> None:
    tv.list_scripts()
    fake.expire_sessions()
    store.save(fake.issue_session())  # another worker signed in meanwhile

    assert tv.list_scripts() == [script]

    assert fake.sign_in_count == 1


def test_a_session_refused_right_after_signing_in_raises_session_expired_without_a_second_sign_in(
    tv: TradingViewClient, fake: FakeTradingView, script: str
) -> None:
    fake.refuse_all_sessions = True

    with pytest.raises(SessionExpired) as caught:
        tv.list_users(script)

    assert fake.sign_in_count == 1
    assert "tv_session" in str(caught.value)
    assert_readable(caught.value)


def test_a_stale_saved_session_leads_to_one_sign_in_at_most_per_call(
    fake: FakeTradingView, store: MemorySessionStore, script: str
) -> None:
    store.save({"sessionid": "stale", "sessionid_sign": "v3:stale"})
    fake.refuse_all_sessions = True

    with fake.client(store) as client, pytest.raises(SessionExpired):
        client.grant_access(script, SELLER_USERNAME, EXPIRY)

    assert fake.sign_in_count == 1


def test_a_refused_session_is_cleared_from_the_store_even_when_signing_in_again_fails(
    fake: FakeTradingView, store: MemorySessionStore, script: str
) -> None:
    store.save({"sessionid": "stale", "sessionid_sign": "v3:stale"})
    fake.require_captcha = True

    with fake.client(store) as client, pytest.raises(CaptchaRequired):
        client.list_scripts()

    assert store.load() is None


def test_a_captcha_raises_captcha_required_at_once_and_says_to_paste_a_cookie(
    tv: TradingViewClient, fake: FakeTradingView, script: str
) -> None:
    fake.require_captcha = True

    with pytest.raises(CaptchaRequired) as caught:
        tv.list_users(script)

    assert fake.sign_in_count == 1
    assert fake.requests_to(LIST_USERS) == []
    assert "sessionid" in str(caught.value)
    assert "tv_session" in str(caught.value)
    assert caught.value.summary == "sign-in needs a captcha"
    assert_readable(caught.value)


def test_a_two_factor_request_raises_two_factor_required_with_the_offered_types(
    tv: TradingViewClient, fake: FakeTradingView
) -> None:
    fake.two_factor_types = ["totp", "sms"]

    with pytest.raises(TwoFactorRequired) as caught:
        tv.sign_in()

    assert caught.value.types == ("totp", "sms")
    assert "totp, sms" in caught.value.summary
    assert fake.sign_in_count == 1
    assert_readable(caught.value)


def test_a_sign_in_rate_limit_answer_raises_rate_limited(
    tv: TradingViewClient, fake: FakeTradingView
) -> None:
    fake.sign_in_rate_limited = True

    with pytest.raises(RateLimited) as caught:
        tv.sign_in()

    assert fake.sign_in_count == 1
    assert_readable(caught.value)


def test_an_http_429_on_sign_in_is_not_retried_because_retries_lock_accounts(
    tv: TradingViewClient, fake: FakeTradingView, sleeps: list[float]
) -> None:
    fake.fail_next(SIGN_IN, 429, times=3)

    with pytest.raises(RateLimited):
        tv.sign_in()

    assert fake.sign_in_count == 1
    assert sleeps == []


def test_a_wrong_password_raises_invalid_credentials(
    fake: FakeTradingView, store: MemorySessionStore
) -> None:
    with (
        TradingViewClient(fake.base_url, SELLER_USERNAME, "wrong password", store) as client,
        pytest.raises(InvalidCredentials) as caught,
    ):
        client.sign_in()

    assert "TRADINGVIEW_PASSWORD" in str(caught.value)
    assert store.load() is None
    assert_readable(caught.value)


def test_missing_credentials_raise_invalid_credentials_without_asking_tradingview(
    fake: FakeTradingView, store: MemorySessionStore, script: str
) -> None:
    with TradingViewClient(fake.base_url, "", "", store) as client, pytest.raises(InvalidCredentials):
        client.list_scripts()

    assert fake.requests == []


def test_pasted_session_cookies_are_checked_saved_and_then_used(
    tv: TradingViewClient, fake: FakeTradingView, store: MemorySessionStore, script: str
) -> None:
    pasted = fake.issue_session()

    tv.use_session_cookies(f" {pasted['sessionid']} ", pasted["sessionid_sign"])

    assert store.load() == pasted
    assert len(fake.requests_to("/tvcoins/details/")) == 1
    assert tv.list_scripts() == [script]
    assert fake.sign_in_count == 0


def test_refused_pasted_cookies_raise_session_expired_and_are_not_saved(
    tv: TradingViewClient, fake: FakeTradingView, store: MemorySessionStore
) -> None:
    with pytest.raises(SessionExpired) as caught:
        tv.use_session_cookies("not-a-real-session", "v3:nope")

    assert store.load() is None
    assert fake.sign_in_count == 0
    assert_readable(caught.value)


def test_a_pasted_cookie_with_a_semicolon_is_rejected_before_anything_is_sent(
    tv: TradingViewClient, fake: FakeTradingView
) -> None:
    with pytest.raises(ValueError, match="semicolons"):
        tv.use_session_cookies("abc; other=1")

    assert fake.requests == []


def test_session_is_valid_checks_the_session_and_never_signs_in(
    tv: TradingViewClient, fake: FakeTradingView
) -> None:
    assert tv.session_is_valid() is False
    assert fake.requests == []

    tv.sign_in()
    assert tv.session_is_valid() is True

    fake.expire_sessions()
    assert tv.session_is_valid() is False
    assert fake.sign_in_count == 1


# ----------------------------------------------------------------------------------------------- users


def test_username_hint_returns_tradingview_spelling_of_an_exact_match_only(
    tv: TradingViewClient, fake: FakeTradingView
) -> None:
    for name in ("Alice", "Alice2", "alicia"):
        fake.add_user(name)

    assert tv.username_hint("  aLiCe ") == "Alice"
    assert tv.username_hint("ali") is None
    assert tv.username_hint("nobody") is None
    assert tv.username_hint("   ") is None

    hints = fake.requests_to("/username_hint/")
    assert [r.query["s"] for r in hints] == ["aLiCe", "ali", "nobody"]
    assert all("cookie" not in r.headers for r in hints)
    assert fake.sign_in_count == 0


def test_resolve_username_raises_user_not_found_for_an_unknown_user(
    tv: TradingViewClient, fake: FakeTradingView
) -> None:
    fake.add_user("Alice")

    assert tv.resolve_username("ALICE") == "Alice"
    with pytest.raises(UserNotFound) as caught:
        tv.resolve_username("Alic")
    assert "Alic" in caught.value.summary
    assert_readable(caught.value)


# --------------------------------------------------------------------------------------------- listing


def test_list_users_follows_next_pages_through_45_users(
    tv: TradingViewClient, fake: FakeTradingView, script: str
) -> None:
    names = [f"trader{number:02d}" for number in range(45)]
    for number, name in enumerate(names):
        fake.set_access(script, name, None if number % 3 else EXPIRY)

    users = tv.list_users(script)

    assert [user.username for user in users] == names
    pages = fake.requests_to(LIST_USERS)
    assert len(pages) == 3
    assert pages[0].query == {"limit": "20", "order_by": "user__username"}
    assert all("c" in page.query and page.query["limit"] == "20" for page in pages[1:])
    assert pages[1].query["c"] != pages[2].query["c"]
    assert all(page.form == {"pine_id": script} for page in pages)


def test_list_users_reads_lifetime_as_none_and_parses_tradingview_expiration_form(
    tv: TradingViewClient, fake: FakeTradingView, script: str
) -> None:
    fake.set_access(script, "Alice", None, created=datetime(2026, 9, 1, 10, 0, tzinfo=UTC))
    fake.set_access(script, "Bob", EXPIRY)

    alice, bob = tv.list_users(script)

    assert alice.expiration is None
    assert alice.created == datetime(2026, 9, 1, 10, 0, tzinfo=UTC)
    assert bob.expiration == datetime(2026, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    assert bob.expiration.tzinfo is UTC
    assert isinstance(alice.id, int)


def test_list_users_filters_by_username_and_find_user_picks_the_exact_match(
    tv: TradingViewClient, fake: FakeTradingView, script: str
) -> None:
    for name in ("Al", "Alice", "Alicia", "Bob"):
        fake.set_access(script, name, EXPIRY)

    assert [user.username for user in tv.list_users(script, "ali")] == ["Alice", "Alicia"]
    assert fake.requests_to(LIST_USERS)[-1].form == {"pine_id": script, "username": "ali"}
    found = tv.find_user(script, "AL")
    assert found is not None
    assert found.username == "Al"
    assert tv.find_user(script, "Alic") is None


def test_absolute_next_links_are_followed_on_the_configured_base_url_only(
    tv: TradingViewClient, fake: FakeTradingView, script: str
) -> None:
    fake.next_link_prefix = "https://www.tradingview.com"
    for number in range(25):
        fake.set_access(script, f"user{number:02d}", None)

    assert len(tv.list_users(script)) == 25
    assert len(fake.requests_to(LIST_USERS)) == 2


def test_a_next_link_that_loops_is_an_unexpected_answer_not_an_endless_loop(
    tv: TradingViewClient, fake: FakeTradingView, script: str
) -> None:
    fake.fail_next(LIST_USERS, 200, times=3, body={"results": [], "next": "/pine_perm/list_users/?c=same"})

    with pytest.raises(UnexpectedAnswer):
        tv.list_users(script)


def test_list_scripts_and_script_names(tv: TradingViewClient, fake: FakeTradingView, script: str) -> None:
    other = fake.add_script(name="Mean Reverter")

    assert tv.list_scripts() == [script, other]
    names = tv.script_names([script, other, "PUB;" + "0" * 32])

    assert names == {script: "Trend Rider", other: "Mean Reverter"}
    [request] = fake.requests_to("/pubscripts-get/")
    assert request.form == {"scriptIdPart": f"{script},{other},PUB;{'0' * 32}", "show_hidden": "true"}
    assert tv.script_names([]) == {}
    assert len(fake.requests_to("/pubscripts-get/")) == 1


# ---------------------------------------------------------------------------------------------- access


def test_add_access_sends_the_utc_expiration_form_and_encodes_the_script_id(
    tv: TradingViewClient, fake: FakeTradingView, script: str
) -> None:
    fake.add_user("Alice")

    assert tv.add_access(script, "Alice", EXPIRY) == "ok"

    [request] = fake.requests_to(ADD)
    assert request.form == {
        "pine_id": script,
        "username_recip": "Alice",
        "expiration": "2026-12-31T23:59:59.000Z",
    }
    assert request.body.startswith(f"pine_id=PUB%3B{script[4:]}&")
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert fake.access(script) == {"Alice": EXPIRY.replace(microsecond=999000)}


def test_add_access_reports_exists_and_leaves_the_expiry_alone(
    tv: TradingViewClient, fake: FakeTradingView, script: str
) -> None:
    fake.set_access(script, "Alice", EXPIRY)

    assert tv.add_access(script, "Alice", LATER) == "exists"
    assert fake.access(script) == {"Alice": EXPIRY.replace(microsecond=999000)}


def test_add_access_without_expiration_grants_lifetime_by_leaving_the_field_out(
    tv: TradingViewClient, fake: FakeTradingView, script: str
) -> None:
    fake.add_user("Alice")

    tv.add_access(script, "Alice", None)

    assert "expiration" not in fake.requests_to(ADD)[0].form
    assert fake.access(script) == {"Alice": None}


def test_expirations_in_other_time_zones_are_sent_in_utc(
    tv: TradingViewClient, fake: FakeTradingView, script: str
) -> None:
    fake.add_user("Alice")
    paris_summer = timezone(timedelta(hours=2))

    tv.add_access(script, "Alice", datetime(2027, 1, 1, 1, 59, 59, 250000, tzinfo=paris_summer))

    assert fake.requests_to(ADD)[0].form["expiration"] == "2026-12-31T23:59:59.250Z"


def test_modify_expiration_changes_the_expiry_and_none_makes_it_lifetime(
    tv: TradingViewClient, fake: FakeTradingView, script: str
) -> None:
    fake.set_access(script, "Alice", EXPIRY)

    tv.modify_expiration(script, "Alice", LATER)
    assert fake.access(script) == {"Alice": LATER.replace(microsecond=999000)}
    assert fake.requests_to(MODIFY)[0].form["expiration"] == "2027-06-30T23:59:59.000Z"

    tv.modify_expiration(script, "Alice", None)
    assert fake.access(script) == {"Alice": None}
    assert "expiration" not in fake.requests_to(MODIFY)[1].form


def test_remove_access_reports_ok_then_not_exists(
    tv: TradingViewClient, fake: FakeTradingView, script: str
) -> None:
    fake.set_access(script, "Alice", EXPIRY)

    assert tv.remove_access(script, "Alice") == "ok"
    assert tv.remove_access(script, "Alice") == "not_exists"
    assert fake.access(script) == {}
    assert fake.requests_to(REMOVE)[0].form == {"pine_id": script, "username_recip": "Alice"}


def test_a_malformed_script_id_or_naive_expiry_is_rejected_before_anything_is_sent(
    tv: TradingViewClient, fake: FakeTradingView, script: str
) -> None:
    with pytest.raises(ValueError, match="PUB;"):
        tv.add_access("PUB;not-hex", "Alice", EXPIRY)
    with pytest.raises(ValueError, match="timezone-aware"):
        tv.grant_access(script, "Alice", datetime(2026, 12, 31, 23, 59, 59))

    assert fake.requests == []


# ------------------------------------------------------------------------------------------ safe grant


def test_grant_adds_a_user_who_has_no_access(
    tv: TradingViewClient, fake: FakeTradingView, script: str
) -> None:
    fake.add_user("Alice")

    result = tv.grant_access(script, "Alice", EXPIRY)

    assert result.action is GrantAction.ADDED
    assert result.previous is None
    assert fake.access(script) == {"Alice": EXPIRY.replace(microsecond=999000)}
    assert [r.path for r in fake.requests if r.path.startswith("/pine_perm/")] == [LIST_USERS, ADD]
    assert "added Alice" in result.summary


def test_grant_changes_the_expiry_of_a_user_with_dated_access_in_tradingview_spelling(
    tv: TradingViewClient, fake: FakeTradingView, script: str
) -> None:
    fake.set_access(script, "Alice", EXPIRY)

    result = tv.grant_access(script, "alice", LATER)

    assert result.action is GrantAction.MODIFIED
    assert result.username == "Alice"
    assert result.previous is not None
    assert result.previous.expiration == EXPIRY.replace(microsecond=999000)
    assert fake.access(script) == {"Alice": LATER.replace(microsecond=999000)}
    assert fake.requests_to(MODIFY)[0].form["username_recip"] == "Alice"
    assert fake.requests_to(ADD) == []


def test_grant_turns_dated_access_into_lifetime_in_place(
    tv: TradingViewClient, fake: FakeTradingView, script: str
) -> None:
    fake.set_access(script, "Alice", EXPIRY)

    result = tv.grant_access(script, "Alice", None)

    assert result.action is GrantAction.MODIFIED
    assert fake.access(script) == {"Alice": None}


@pytest.mark.parametrize("requested", [None, EXPIRY])
def test_grant_leaves_lifetime_access_as_it_is(
    tv: TradingViewClient, fake: FakeTradingView, script: str, requested: datetime | None
) -> None:
    fake.set_access(script, "Alice", None)

    result = tv.grant_access(script, "Alice", requested)

    assert result.action is GrantAction.UNCHANGED
    assert result.expiration is None
    assert fake.access(script) == {"Alice": None}
    assert fake.requests_to(ADD) == fake.requests_to(MODIFY) == fake.requests_to(REMOVE) == []


def test_grant_moves_lifetime_to_a_dated_expiry_by_removing_then_adding(
    tv: TradingViewClient, fake: FakeTradingView, script: str
) -> None:
    fake.set_access(script, "Alice", None)

    result = tv.grant_access(script, "Alice", EXPIRY, replace_lifetime=True)

    assert result.action is GrantAction.REPLACED
    assert fake.access(script) == {"Alice": EXPIRY.replace(microsecond=999000)}
    assert [r.path for r in fake.requests if r.path.startswith("/pine_perm/")] == [LIST_USERS, REMOVE, ADD]


def test_grant_looks_again_and_sets_the_expiry_when_add_says_the_user_already_exists(
    tv: TradingViewClient, fake: FakeTradingView, script: str
) -> None:
    fake.set_access(script, "Alice", EXPIRY)
    fake.fail_next(LIST_USERS, 200, body={"results": [], "next": None})  # granted just after our lookup

    result = tv.grant_access(script, "Alice", LATER)

    assert result.action is GrantAction.MODIFIED
    assert fake.access(script) == {"Alice": LATER.replace(microsecond=999000)}


def test_grant_raises_already_has_access_when_tradingview_says_exists_but_never_lists_the_user(
    tv: TradingViewClient, fake: FakeTradingView, script: str
) -> None:
    fake.set_access(script, "Alice", EXPIRY)
    fake.fail_next(LIST_USERS, 200, times=2, body={"results": [], "next": None})

    with pytest.raises(AlreadyHasAccess) as caught:
        tv.grant_access(script, "Alice", LATER)

    assert fake.access(script) == {"Alice": EXPIRY.replace(microsecond=999000)}
    assert_readable(caught.value)


# ------------------------------------------------------------------------------------- retries, errors


def test_5xx_answers_are_retried_with_backoff_then_succeed(
    tv: TradingViewClient, fake: FakeTradingView, sleeps: list[float], script: str
) -> None:
    tv.sign_in()
    fake.fail_next(LIST_SCRIPTS, 503, times=2)

    assert tv.list_scripts() == [script]
    assert sleeps == [1.0, 2.0]
    assert len(fake.requests_to(LIST_SCRIPTS)) == 3


def test_a_429_is_retried_after_the_time_tradingview_asks_for(
    tv: TradingViewClient, fake: FakeTradingView, sleeps: list[float], script: str
) -> None:
    tv.sign_in()
    fake.fail_next(LIST_SCRIPTS, 429, headers={"Retry-After": "5"})

    assert tv.list_scripts() == [script]
    assert sleeps == [5.0]


def test_a_dropped_connection_is_retried(
    tv: TradingViewClient, fake: FakeTradingView, sleeps: list[float]
) -> None:
    fake.add_user("Alice")
    fake.disconnect_next("/username_hint/")

    assert tv.username_hint("alice") == "Alice"
    assert sleeps == [1.0]


def test_a_read_timeout_is_retried_then_reported_as_unavailable(
    fake: FakeTradingView, sleeps: list[float]
) -> None:
    fake.slow_next("/username_hint/", 0.3, times=2)

    with (
        fake.client(timeout=(1, 0.05), max_attempts=2, sleep=sleeps.append) as client,
        pytest.raises(TradingViewUnavailable) as caught,
    ):
        client.username_hint("alice")

    assert "Timeout" in str(caught.value)
    assert sleeps == [1.0]


def test_persistent_5xx_answers_raise_tradingview_unavailable_after_max_attempts(
    tv: TradingViewClient, fake: FakeTradingView, sleeps: list[float], script: str
) -> None:
    tv.sign_in()
    fake.fail_next(LIST_SCRIPTS, 502, times=4)

    with pytest.raises(TradingViewUnavailable) as caught:
        tv.list_scripts()

    assert str(caught.value).startswith("TradingView could not be reached after 4 attempts: HTTP 502")
    assert caught.value.transient
    assert sleeps == [1.0, 2.0, 4.0]
    assert len(fake.requests_to(LIST_SCRIPTS)) == 4
    assert_readable(caught.value)


def test_persistent_429_answers_raise_rate_limited(
    tv: TradingViewClient, fake: FakeTradingView, sleeps: list[float], script: str
) -> None:
    tv.sign_in()
    fake.fail_next(LIST_SCRIPTS, 429, times=4)

    with pytest.raises(RateLimited) as caught:
        tv.list_scripts()

    assert caught.value.transient
    assert "4 times in a row" in str(caught.value)
    assert_readable(caught.value)


def test_a_server_that_is_down_raises_tradingview_unavailable(
    store: MemorySessionStore, sleeps: list[float]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    with (
        TradingViewClient(
            f"http://127.0.0.1:{closed_port}", SELLER_USERNAME, SELLER_PASSWORD, store, sleep=sleeps.append
        ) as client,
        pytest.raises(TradingViewUnavailable) as caught,
    ):
        client.username_hint("alice")

    assert str(caught.value).startswith("TradingView could not be reached after 4 attempts: ConnectionError")
    assert sleeps == [1.0, 2.0, 4.0]
    assert_readable(caught.value)


def test_a_bad_pagination_answer_is_an_unexpected_answer_carrying_the_detail(
    tv: TradingViewClient, fake: FakeTradingView, script: str
) -> None:
    fake.fail_next(LIST_USERS, 400, body={"detail": "bad_pagination_request"})

    with pytest.raises(UnexpectedAnswer) as caught:
        tv.list_users(script)

    assert caught.value.detail == "bad_pagination_request"
    assert caught.value.status == 400
    assert "bad_pagination_request" in str(caught.value)
    assert_readable(caught.value)


def test_an_unknown_script_id_raises_script_not_accessible(
    tv: TradingViewClient, fake: FakeTradingView
) -> None:
    fake.add_user("Alice")

    with pytest.raises(ScriptNotAccessible) as caught:
        tv.add_access("PUB;" + "a" * 32, "Alice", EXPIRY)

    assert caught.value.detail == "Wrong credentials or pineId"
    assert_readable(caught.value)


def test_an_unknown_recipient_raises_script_not_accessible(
    tv: TradingViewClient, fake: FakeTradingView, script: str
) -> None:
    with pytest.raises(ScriptNotAccessible):
        tv.add_access(script, "nobody-here", EXPIRY)


def test_a_wrong_script_id_answered_with_403_is_not_mistaken_for_an_expired_session(
    tv: TradingViewClient, fake: FakeTradingView
) -> None:
    fake.wrong_pine_id_status = 403
    tv.sign_in()

    with pytest.raises(ScriptNotAccessible):
        tv.list_users("PUB;" + "b" * 32)

    assert fake.sign_in_count == 1
    assert len(fake.requests_to("/tvcoins/details/")) == 1


def test_a_wrong_script_id_refused_with_403_keeps_a_good_session_saved_by_another_process(
    tv: TradingViewClient, fake: FakeTradingView, store: MemorySessionStore
) -> None:
    fake.wrong_pine_id_status = 403
    tv.sign_in()
    fake.expire_sessions()
    fresh = fake.issue_session()
    store.save(fresh)  # another worker signed in meanwhile

    with pytest.raises(ScriptNotAccessible):
        tv.list_users("PUB;" + "c" * 32)

    assert fake.sign_in_count == 1
    assert store.load() == fresh


def test_an_unknown_status_is_an_unexpected_answer_never_a_success(
    tv: TradingViewClient, fake: FakeTradingView, script: str
) -> None:
    fake.add_user("Alice")
    fake.fail_next(ADD, 200, body={"status": "pending"})

    with pytest.raises(UnexpectedAnswer) as caught:
        tv.add_access(script, "Alice", EXPIRY)

    assert "pending" in str(caught.value)
    assert_readable(caught.value)


def test_an_answer_that_is_not_json_is_an_unexpected_answer(
    tv: TradingViewClient, fake: FakeTradingView, script: str
) -> None:
    fake.add_user("Alice")
    fake.fail_next(REMOVE, 200, body=b"OK", content_type="text/plain")

    with pytest.raises(UnexpectedAnswer):
        tv.remove_access(script, "Alice")


def test_an_html_error_page_on_a_public_call_is_an_unexpected_answer(
    tv: TradingViewClient, fake: FakeTradingView
) -> None:
    fake.fail_next("/username_hint/", 404, body=b"<html>gone</html>", content_type="text/html")

    with pytest.raises(UnexpectedAnswer) as caught:
        tv.username_hint("alice")

    assert "HTTP 404" in str(caught.value)


# ------------------------------------------------------------------------------------- logs and helpers


def test_logs_and_errors_never_show_cookies_passwords_or_auth_tokens(
    fake: FakeTradingView, store: MemorySessionStore, script: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.set_access(script, "Alice", EXPIRY)
    errors: list[TradingViewError] = []
    with fake.client(store) as client:
        client.grant_access(script, "Alice", LATER)
        fake.expire_sessions()
        client.list_users(script)
        client.use_session_cookies(**fake.issue_session())
        fake.refuse_all_sessions = True
        with pytest.raises(SessionExpired) as caught:
            client.list_scripts()
        errors.append(caught.value)
    with TradingViewClient(fake.base_url, SELLER_USERNAME, "Wr0ng-Passw0rd", MemorySessionStore()) as wrong:
        with pytest.raises(InvalidCredentials) as caught_credentials:
            wrong.sign_in()
        errors.append(caught_credentials.value)

    secrets = [
        *fake.sessions,
        *fake.sessions.values(),
        SELLER_PASSWORD,
        "Wr0ng-Passw0rd",
        "private-auth-token",
    ]
    logged = [record.getMessage() for record in caplog.records]
    assert any("POST /pine_perm/list_users/" in line for line in logged)
    for text in logged + [str(error) for error in errors] + [error.summary for error in errors]:
        for secret in secrets:
            assert secret not in text
        assert "Cookie" not in text


def test_expirations_format_in_utc_with_milliseconds_and_parse_from_tradingview_form() -> None:
    assert format_expiration(EXPIRY) == "2026-12-31T23:59:59.000Z"
    assert parse_expiration("2026-12-31T23:59:59.999000+00:00") == datetime(
        2026, 12, 31, 23, 59, 59, 999000, tzinfo=UTC
    )
    assert parse_expiration("2026-12-31T23:59:59.000Z") == EXPIRY
    with pytest.raises(ValueError, match="timezone-aware"):
        format_expiration(datetime(2026, 12, 31))


def test_client_from_settings_reads_the_tradingview_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_settings = SimpleNamespace(
        TRADINGVIEW_URL="https://fr.tradingview.com/",
        TRADINGVIEW_USERNAME="seller",
        TRADINGVIEW_PASSWORD="pw",
    )
    monkeypatch.setattr("django.conf.settings", fake_settings)

    with client_from_settings(MemorySessionStore(), max_attempts=1) as client:
        assert client.base_url == "https://fr.tradingview.com"
        assert client.username == "seller"


def test_every_tradingview_error_survives_pickling_as_celery_does():
    import pickle

    from pineaccess import tradingview

    error = tradingview.TwoFactorRequired("Two-factor code needed.", summary="2FA", types=("totp",))
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301  (our own bytes, as Celery would)
    assert type(copy) is tradingview.TwoFactorRequired
    assert (str(copy), copy.summary, copy.types) == ("Two-factor code needed.", "2FA", ("totp",))
