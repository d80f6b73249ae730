"""Fixtures of the webhook tests: a recorder with its token, settings at their defaults, a recorded queue."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.http import HttpResponse

from trading.tests.execution_support import TaskQueue
from trading.tests.factories import RecorderFactory


@pytest.fixture(autouse=True)
def _webhook_settings(settings) -> None:
    """The documented defaults: any source address, no proxies, a 2-second window for identical bodies."""
    settings.WEBHOOK_ALLOWED_IPS = []
    settings.TRUSTED_PROXIES = []
    settings.WEBHOOK_DEDUP_SECONDS = 2.0


@pytest.fixture
def recorder(db):
    """An ES recorder that is switched on."""
    return RecorderFactory(symbol="ES")


@pytest.fixture
def post(
    client, recorder, task_queue: TaskQueue, django_capture_on_commit_callbacks
) -> Callable[..., HttpResponse]:
    """POST a body to the recorder's webhook as TradingView would; callbacks after commit run (and queue)."""

    def send(
        body: bytes | str,
        *,
        content_type: str = "application/json",
        token: str | None = None,
        remote_addr: str = "52.89.214.238",
        **extra,
    ) -> HttpResponse:
        data = body.encode() if isinstance(body, str) else body
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(
                f"/webhook/{token if token is not None else recorder.webhook_token}",
                data=data,
                content_type=content_type,
                REMOTE_ADDR=remote_addr,
                **extra,
            )

    return send
