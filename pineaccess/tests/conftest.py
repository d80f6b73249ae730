"""Fixtures for Pine Script access: named people, a fake TradingView the settings point at, eager tasks."""

from collections.abc import Iterator

import pytest

from justtrades.celery import app as celery_app
from justtrades.tests.factories import StaffFactory, UserFactory
from pineaccess.tests.factories import PineScriptFactory
from pineaccess.tests.fake_tradingview import (
    SELLER_PASSWORD,
    SELLER_USERNAME,
    FakeTradingView,
    running_fake_tradingview,
)


@pytest.fixture(autouse=True)
def _private_cache(settings) -> None:
    """A fresh in-memory cache per test, so throttles and cached checks never leak between tests."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "pa"}
    }
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def fake_tv(settings) -> Iterator[FakeTradingView]:
    """A fake TradingView on 127.0.0.1 with the settings pointed at it and no real backoff sleeps."""
    with running_fake_tradingview() as fake:
        settings.TRADINGVIEW_URL = fake.base_url
        settings.TRADINGVIEW_USERNAME = SELLER_USERNAME
        settings.TRADINGVIEW_PASSWORD = SELLER_PASSWORD
        settings.TRADINGVIEW_BACKOFF_SECONDS = 0
        settings.TRADINGVIEW_MAX_ATTEMPTS = 2
        settings.TRADINGVIEW_TIMEOUT = (2, 5)
        yield fake


@pytest.fixture
def unreachable_tv(settings) -> None:
    """Settings pointing at a closed port on 127.0.0.1, so every call fails to connect at once."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.TRADINGVIEW_URL = f"http://127.0.0.1:{port}"
    settings.TRADINGVIEW_USERNAME = SELLER_USERNAME
    settings.TRADINGVIEW_PASSWORD = SELLER_PASSWORD
    settings.TRADINGVIEW_BACKOFF_SECONDS = 0
    settings.TRADINGVIEW_MAX_ATTEMPTS = 1


@pytest.fixture
def eager_tasks() -> Iterator[None]:
    """Run queued Celery tasks in-process, at once, with no retry countdown."""
    previous = celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = previous


@pytest.fixture
def buyer(db):
    """An approved buyer with a TradingView username that exists on the fake."""
    return UserFactory(username="alice", tradingview_username="Alice_Trades")


@pytest.fixture
def stranger(db):
    """Another approved user with no access to anything."""
    return UserFactory(username="bob", tradingview_username="BobCharts")


@pytest.fixture
def staff(db):
    return StaffFactory(username="operator")


@pytest.fixture
def script(db, fake_tv: FakeTradingView):
    """An active catalogue script that also exists on the fake TradingView."""
    row = PineScriptFactory(name="Trend Rider")
    fake_tv.add_script(row.pine_id, name="Trend Rider")
    return row


@pytest.fixture
def tv_users(fake_tv: FakeTradingView, buyer, stranger) -> None:
    """The named people exist on TradingView too (with TradingView's own spelling)."""
    fake_tv.add_user("Alice_Trades")
    fake_tv.add_user("BobCharts")
