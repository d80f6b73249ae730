"""Test-wide fixtures shared by every app."""

import os
import shutil
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(autouse=True)
def _plain_static_storage(settings):
    """Render templates without a collectstatic manifest, as tests never run collectstatic."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _contract_table(request):
    """Put back the contract rows of the data migration when a transactional test flushed them.

    Tests with `transaction=True` (live servers, workers) end by emptying every table, migration data too.
    """
    marker = request.node.get_closest_marker("django_db")
    if marker is None:
        return
    transactional = marker.kwargs.get("transaction", False) or (marker.args and marker.args[0])
    request.getfixturevalue("transactional_db" if transactional else "db")
    from trading.models import ContractSpec
    from trading.symbols import CONTRACTS

    if ContractSpec.objects.count() < len(CONTRACTS):
        ContractSpec.objects.bulk_create(
            [
                ContractSpec(
                    root=c.root,
                    name=c.name,
                    exchange=c.exchange,
                    tick_size=c.tick_size,
                    tick_value=c.tick_value,
                    point_value=c.point_value,
                    months=c.months,
                )
                for c in CONTRACTS.values()
            ],
            ignore_conflicts=True,
        )


@pytest.fixture(autouse=True)
def _fresh_webhook_state(monkeypatch) -> None:
    """Each test starts without the webhook's cached recorders and with runner keys of its own."""
    from trading import caches  # needs Django set up, which fixtures have
    from trading.brokers import registry
    from trading.services import queue
    from webhooks.services import recorder_cache_clear

    recorder_cache_clear()
    caches.forget()
    registry.token_cache_clear()
    monkeypatch.setattr(queue, "RUNNER_KEY", f"test-runner-{uuid.uuid4().hex}:{{}}")


@pytest.fixture
def task_queue(monkeypatch, django_capture_on_commit_callbacks):
    """The trading pipeline's task messages, recorded instead of sent, and run in this process by `run()`."""
    from trading.services import queue
    from trading.tests.execution_support import TaskQueue

    fake = TaskQueue(django_capture_on_commit_callbacks)
    monkeypatch.setattr(queue, "task_publish", fake.publish)
    monkeypatch.setattr(queue, "recorder_wake", fake.wake)
    return fake


@pytest.fixture
def decisions_as_tasks(task_queue, monkeypatch):
    """A signal's decisions go out as `trader_signal_execute` messages, as its retries and sweeps do.

    For tests of what happens between those messages (a worker dying, a second delivery); the runner itself
    executes a signal's decisions at once.
    """
    from trading.services import queue

    def as_tasks(*, decision_ids):
        for decision_id in decision_ids:
            queue.task_publish(queue.TRADER_SIGNAL_EXECUTE, decision_id)

    monkeypatch.setattr("trading.services.signals.decisions_execute", as_tasks)
    return task_queue


@pytest.fixture(autouse=True)
def _decisions_in_the_test_thread(settings) -> None:
    """Decisions run in the thread of the test: fan-out threads could not see its uncommitted rows."""
    settings.EXECUTION_THREADS = 1


@pytest.fixture(scope="session")
def chromium() -> Iterator:
    """A headless Debian Chromium driven by Playwright, shared by the session's browser tests."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"Chromium is missing at {CHROMIUM}; .ci/run installs Debian's chromium package.")
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium).")
    # Playwright's sync API runs an event loop in this thread; Django's ORM must still be usable from tests.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, live_server) -> Iterator:
    """A fresh browser page that may only reach the live test server: anything else fails the test."""
    context = chromium.new_context(base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(10_000)
    allowed = urlsplit(live_server.url).netloc
    page.outside_requests = []

    def guard(route):
        if urlsplit(route.request.url).netloc != allowed:
            page.outside_requests.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    page.route("**/*", guard)
    yield page
    context.close()
    assert not page.outside_requests, f"The page tried to reach other hosts: {page.outside_requests}"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    """People are created in most tests; Argon2 would make each cost a noticeable fraction of a second.

    The one place tests choose the hasher: a test about hashing itself sets PASSWORD_HASHERS again.
    """
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


class PublishedTasks(list):
    """What the Pine Script access services asked to publish, as (task's short name, *args) in order.

    `committed` keeps those whose transaction committed, which is what Celery would have been sent.
    """

    def __init__(self) -> None:
        super().__init__()
        self.committed: list[tuple] = []

    def publish(self, task_name: str, *args) -> None:
        from django.db import transaction

        message = (task_name.rsplit(".", 1)[-1], *args)
        self.append(message)
        transaction.on_commit(lambda: self.committed.append(message))


@pytest.fixture
def pineaccess_tasks(monkeypatch) -> PublishedTasks:
    """The Pine Script access tasks, recorded at their one seam instead of sent to Celery."""
    from pineaccess.services import publish  # needs Django set up, which fixtures have

    recorded = PublishedTasks()
    monkeypatch.setattr(publish, "task_after_commit", recorded.publish)
    return recorded
