"""End to end over HTTP with a real Celery worker on Redis: an alert posted to the running site becomes
orders, fills and a position, with nothing in between faked.

Runs only when REDIS_URL is set (CI sets it) and the test database is one another process can open
(PostgreSQL, or SQLite in a file). Locally: `REDIS_URL=redis://127.0.0.1:6379/0 pytest -m e2e`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from django.conf import settings
from django.db import connection

from trading.models import Order, Position, Signal
from trading.tests.execution_support import make_trader
from trading.tests.factories import RecorderFactory, UserFactory

REDIS_URL = os.environ.get("REDIS_URL", "")
WAIT_SECONDS = 60.0

pytestmark = [
    pytest.mark.e2e,
    # Committed data the worker process can see; the contract table (a data migration) is restored first.
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(
        not REDIS_URL,
        reason="needs a Redis for the Celery worker: set REDIS_URL (CI does), e.g. redis://127.0.0.1:6379/0",
    ),
]


def _database_url() -> str | None:
    """The test database as a DATABASE_URL another process can use; None when it is in this one's memory."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        name = str(db["NAME"])
        return None if "memory" in name else f"sqlite:///{name}"
    if db["ENGINE"].endswith("postgresql"):
        credentials = quote(db["USER"] or "", safe="")
        if db["PASSWORD"]:
            credentials += ":" + quote(db["PASSWORD"], safe="")
        host = db["HOST"] or "localhost"
        return f"postgres://{credentials}@{host}:{db['PORT'] or 5432}/{db['NAME']}"
    return None


@pytest.fixture
def celery_worker_process():
    """`celery -A justtrades worker` in its own process, on Redis and the test database; stopped after."""
    database_url = _database_url()
    if database_url is None:
        pytest.skip("The test database is in memory: a worker process cannot open it.")
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DATABASE_POOL": "false",
        "REDIS_URL": REDIS_URL,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "justtrades.settings"),
    }
    descriptor, name = tempfile.mkstemp(prefix="e2e-worker-", suffix=".log")
    log, log_path = os.fdopen(descriptor, "w"), Path(name)
    command = [
        sys.executable, "-m", "celery", "-A", "justtrades", "worker", "--queues", "default,orders",
        "--pool", "threads", "--concurrency", "4", "--without-mingle", "--without-gossip",
        "--loglevel", "INFO",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    process.log_path = log_path  # type: ignore[attr-defined]
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()
        log_path.unlink(missing_ok=True)  # a failure has already printed its tail


def _wait_for(condition, process, what: str):
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        if process.poll() is not None:
            pytest.fail(
                f"The worker exited with {process.returncode}:\n{process.log_path.read_text()[-4000:]}"
            )
        time.sleep(0.25)
    pytest.fail(
        f"Waited {WAIT_SECONDS:.0f} s for {what}. Worker log:\n{process.log_path.read_text()[-4000:]}"
    )


def test_an_alert_posted_over_http_becomes_a_filled_bracket_and_a_position(
    live_server, celery_worker_process
):
    owner = UserFactory()
    recorder = RecorderFactory(
        owner=owner,
        symbol="ES",
        tp_targets=[{"value": 8, "trim": None}],
        sl_enabled=True,
        sl_amount=Decimal(8),
    )
    trader = make_trader(recorder)

    response = requests.post(
        f"{live_server.url}/webhook/{recorder.webhook_token}",
        data=b'{"action": "buy", "ticker": "ES1!", "contracts": 2, "price": 5000.25, "id": "e2e-1"}',
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    again = requests.post(
        f"{live_server.url}/webhook/{recorder.webhook_token}",
        data=b'{"action": "buy", "ticker": "ES1!", "contracts": 2, "price": 5000.25, "id": "e2e-1"}',
        headers={"Content-Type": "application/json"},
        timeout=10,
    )

    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
    assert again.json() == {"status": "duplicate", "signal": response.json()["signal"]}
    position = _wait_for(
        lambda: Position.objects.filter(broker_account=trader.account, symbol="ES", quantity=2).first(),
        celery_worker_process,
        "the position",
    )
    assert position.avg_price == Decimal("5000.25")
    orders = _wait_for(
        lambda: (
            (rows := list(Order.objects.filter(trader=trader)))
            and all(row.status != "pending" for row in rows)
            and rows
        ),
        celery_worker_process,
        "the orders",
    )
    assert {order.plan_key: order.status for order in orders} == {
        "entry": "filled",
        "tp1": "working",
        "sl1": "working",
    }
    assert Signal.objects.get().status == Signal.Status.PROCESSED
