"""SQL statements per processed paper alert, by phase and by table (bench/pipeline.py `--only queries`).

Each phase is called in this process as the web process and the worker call it: the webhook view, then the
recorder's runner (`signal_process`: the signal judged, its decision planned, its orders sent). The task
messages they send go to Redis and are never consumed (the bench empties Redis before it starts the workers).
"""

from __future__ import annotations

import json
import re
import secrets
from collections import Counter

from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

TABLE = re.compile(r'(?:FROM|INTO|UPDATE|JOIN)\s+"?([a-z_]+)"?', re.I)


def _kind(sql: str) -> str:
    verb = sql.split(None, 1)[0].upper() if sql.strip() else "?"
    if verb in ("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT"):
        return verb.lower()
    match = TABLE.search(sql)
    return f"{verb.lower()} {match.group(1) if match else '?'}"


def _phase(call) -> tuple[dict, object]:
    with CaptureQueriesContext(connection) as captured:
        value = call()
    kinds = Counter(_kind(query["sql"]) for query in captured.captured_queries)
    return {"total": len(captured.captured_queries), "by_statement": dict(kinds.most_common())}, value


def count_paper_alert(user) -> dict:
    """Three paper alerts in a row on a fresh recorder and paper trader: buy (cold caches), close, buy."""
    from trading.services import broker_accounts, recorders, signals, traders
    from webhooks.views import webhook

    account = broker_accounts.broker_account_create(owner=user, name="Paper queries")
    recorder = recorders.recorder_create(
        owner=user,
        name="queries",
        symbol="ES",
        sl_enabled=True,
        sl_amount=8,
        tp_targets=[{"value": 8, "trim": None}],
    )
    traders.trader_create(owner=user, recorder=recorder, account=account)
    factory = RequestFactory()
    alerts = {}
    for label, action in (("1_buy_cold", "buy"), ("2_close", "close"), ("3_buy_warm", "buy")):
        body = json.dumps(
            {"action": action, "ticker": "ES1!", "contracts": 1, "price": 5000.25, "id": secrets.token_hex(6)}
        )
        request = factory.post(
            f"/webhook/{recorder.webhook_token}",
            data=body,
            content_type="application/json",
            REMOTE_ADDR="127.0.0.1",
            SERVER_NAME="127.0.0.1",
        )
        phases = {}
        phases["webhook"], response = _phase(lambda request=request: webhook(request, recorder.webhook_token))
        signal_id = json.loads(response.content)["signal"]
        # The runner: the signal judged, its decision planned and its orders sent, in one task.
        phases["signal_process"], _ = _phase(
            lambda signal_id=signal_id: signals.signal_process(signal_id=signal_id)
        )
        phases["total"] = {"total": sum(p["total"] for p in phases.values())}
        alerts[label] = phases
    return {
        "alerts": alerts,
        "note": "one recorder, one paper trader with a take-profit and a stop (a bracket)",
    }
