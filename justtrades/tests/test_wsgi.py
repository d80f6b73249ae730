"""The WSGI entry point gunicorn serves: alerts skip the middleware, every other page keeps it."""

import io
import json
from decimal import Decimal
from pathlib import Path

import pytest

from justtrades.wsgi import application
from trading.models import Signal
from trading.tests.factories import RecorderFactory

pytestmark = pytest.mark.django_db(transaction=True)  # a real request cycle: connections open and close
ALERT = Path(__file__).parents[2] / "webhooks" / "tests" / "alerts" / "ready_message_entry_long.json"


def serve(method: str, path: str, body: bytes = b"", host: str = "127.0.0.1") -> tuple[int, dict, bytes]:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": host,
        "REMOTE_ADDR": "52.89.214.238",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
    }
    answer: dict = {}

    def start_response(status, headers):
        answer["status"] = int(status.split()[0])
        answer["headers"] = dict(headers)

    content = b"".join(application(environ, start_response))
    return answer["status"], answer["headers"], content


@pytest.fixture(autouse=True)
def _hosts(settings):
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_ALLOWED_IPS = []


def test_an_alert_is_stored_and_answered_without_going_through_the_middleware(task_queue):
    recorder = RecorderFactory(symbol="ES")
    body = ALERT.read_bytes()  # a body TradingView sent, as captured

    status, headers, content = serve("POST", f"/webhook/{recorder.webhook_token}", body)

    assert status == 200
    signal = Signal.objects.get()
    assert json.loads(content) == {"status": "accepted", "signal": signal.pk}
    assert (signal.recorder, signal.status, signal.raw_body) == (
        recorder,
        Signal.Status.PENDING,
        body.decode(),
    )
    assert (signal.action, signal.ticker, signal.quantity) == ("buy", "ES1!", Decimal(1))
    assert signal.source_ip == "52.89.214.238"
    assert "Set-Cookie" not in headers
    assert "X-Frame-Options" not in headers  # the clickjacking middleware never saw it
    assert task_queue.names() == ["signal_process"]


def test_an_alert_for_a_host_that_is_not_allowed_is_refused_and_not_stored():
    recorder = RecorderFactory(symbol="ES")

    status, _headers, _content = serve(
        "POST", f"/webhook/{recorder.webhook_token}", b'{"action": "buy"}', host="evil.example"
    )

    assert status == 400
    assert not Signal.objects.exists()


def test_every_other_page_still_goes_through_the_middleware():
    status, headers, _content = serve("GET", "/login")

    assert status == 200
    assert headers["X-Frame-Options"] == "DENY"
    assert "csrftoken" in headers.get("Set-Cookie", "")
