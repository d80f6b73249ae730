"""Named people and test doubles for the accounts tests."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from django.test import Client

from accounts import services
from accounts.models import User
from justtrades.tests.factories import StaffFactory, UserFactory
from pineaccess.services.usernames import UsernameCheck
from pineaccess.tests.factories import PineScriptFactory

_cache_locations = itertools.count()


@pytest.fixture(autouse=True)
def _accounts_settings(settings) -> None:
    """An empty private cache per test and the documented defaults (the root conftest makes hashing fast)."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"accounts-tests-{next(_cache_locations)}",
        }
    }
    settings.REGISTRATION_OPEN = False
    settings.DEFAULT_PINE_IDS = []
    settings.LOGIN_RATE_LIMIT = "10/900"
    settings.KEY_RATE_LIMIT = "10/900"


@dataclass
class FakeTradingViewUsernames:
    """Stands in for pineaccess's username check: which TradingView users exist, and whether it answers."""

    users: set[str] = field(default_factory=set)
    reachable: bool = True
    asked: list[str] = field(default_factory=list)

    def add(self, *names: str) -> None:
        self.users.update(names)

    def __call__(self, *, username: str, requested_by=None) -> UsernameCheck:
        self.asked.append(username)
        if not self.reachable:
            return UsernameCheck(None, username, "TradingView could not be reached.")
        for name in self.users:
            if name.casefold() == username.strip().casefold():
                return UsernameCheck(True, name)
        return UsernameCheck(False, username, f'There is no TradingView user named "{username}".')


@pytest.fixture
def tradingview(monkeypatch) -> FakeTradingViewUsernames:
    """TradingView's answers about usernames, under the test's control."""
    fake = FakeTradingViewUsernames()
    monkeypatch.setattr("accounts.forms.tradingview_username_check", fake)
    monkeypatch.setattr("pineaccess.services.usernames.tradingview_username_check", fake)
    return fake


@pytest.fixture
def approved_user(db) -> User:
    """Alice: an approved buyer with a TradingView username."""
    return UserFactory(username="alice", tradingview_username="Alice_Trades")


@pytest.fixture
def stranger(db) -> User:
    """Bob: another approved user, who owns nothing of Alice's."""
    return UserFactory(username="bob", tradingview_username="BobCharts")


@pytest.fixture
def pending_user(db) -> User:
    """Penny: registered without a key and waiting for approval."""
    return UserFactory(
        username="penny", tradingview_username="PennyPips", approval_status=User.ApprovalStatus.PENDING
    )


@pytest.fixture
def rejected_user(db) -> User:
    """Rex: his registration was rejected, so his account is inactive."""
    return UserFactory(
        username="rex",
        tradingview_username="RexRisk",
        approval_status=User.ApprovalStatus.REJECTED,
        is_active=False,
    )


@pytest.fixture
def staff(db) -> User:
    """Olivia: operator staff."""
    return StaffFactory(username="olivia")


@pytest.fixture
def staff_client(staff) -> Client:
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def script(db):
    return PineScriptFactory(name="Trend Rider")


@pytest.fixture
def other_script(db):
    return PineScriptFactory(name="Mean Reverter")


@pytest.fixture
def default_script(db, settings):
    """The catalogue's default script, granted by keys that name none."""
    row = PineScriptFactory(name="Starter Pack")
    settings.DEFAULT_PINE_IDS = [row.pine_id]
    return row


@pytest.fixture
def make_key(db) -> Callable[..., services.IssuedAccessKey]:
    """Issue one key through the service, the way staff do, and return it with its raw form."""

    def make(**options) -> services.IssuedAccessKey:
        return services.access_keys_create(count=1, **options)[0]

    return make
