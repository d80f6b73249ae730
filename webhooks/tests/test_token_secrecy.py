"""The webhook token never reaches a log line, whatever Django answers for us."""

from __future__ import annotations

import logging

import pytest

from trading.models import Signal

pytestmark = pytest.mark.django_db


def test_a_request_refused_for_its_host_header_does_not_log_the_token(client, recorder, caplog):
    """Django refuses it before our view runs: its own log lines must not carry the path."""
    token = recorder.webhook_token
    with caplog.at_level(logging.DEBUG):
        response = client.post(
            f"/webhook/{token}",
            data=b'{"action": "buy"}',
            content_type="application/json",
            HTTP_HOST="203.0.113.9",  # the server's address pasted into TradingView, not its name
        )

    assert response.status_code == 400
    assert Signal.objects.count() == 0
    leaked = [record.getMessage() for record in caplog.records if token in record.getMessage()]
    assert leaked == []
