"""Load on the stack: alerts sent as TradingView sends them, set-up through the services, what came of it."""

from __future__ import annotations

import asyncio
import json
import secrets
import statistics
import time
from dataclasses import dataclass
from typing import Any

FINAL_SIGNAL = {"processed", "refused", "rejected", "ignored", "stale", "blocked", "failed"}
FINAL_DECISION = {"executed", "nothing", "refused", "blocked", "stale", "failed", "unsettled"}

# --- load generation ----------------------------------------------------------------------------------------


@dataclass
class Sent:
    started: float  # wall clock (time.time()), comparable with the fake's arrivals and the workers' rows
    status: int
    seconds: float
    answer: dict


async def post(port: int, path: str, body: bytes, timeout: float) -> Sent:
    """POST on a fresh connection with `Connection: close`, as TradingView does."""
    started_wall, started = time.time(), time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        writer.write(
            (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            + body
        )
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
        writer.close()
    except (OSError, TimeoutError):
        return Sent(started_wall, 0, time.perf_counter() - started, {})
    status = int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/") else 0
    head, _, body = raw.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():  # the lean webhook path sets no Content-Length
        body = dechunk(body)
    try:
        answer = json.loads(body)
    except ValueError:
        answer = {}
    return Sent(started_wall, status, time.perf_counter() - started, answer)


def dechunk(data: bytes) -> bytes:
    out = []
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out.append(data[:size])
        data = data[size + 2 :]
    return b"".join(out)


def fire(port: int, requests: list[tuple[str, dict]], concurrency: int, timeout: float = 30) -> list[Sent]:
    """Send every (path, body) at once through at most `concurrency` simultaneous connections, in order."""

    async def main() -> list[Sent]:
        gate = asyncio.Semaphore(concurrency)

        async def one(path: str, body: dict) -> Sent:
            async with gate:
                return await post(port, path, json.dumps(body).encode(), timeout)

        return await asyncio.gather(*(one(path, body) for path, body in requests))

    return asyncio.run(main())


def alert(action: str, alert_id: str, price: float = 5000.25) -> dict:
    return {"action": action, "ticker": "ES1!", "contracts": 1, "price": price, "id": alert_id}


def pct(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def ms_stats(seconds: list[float]) -> dict[str, Any]:
    if not seconds:
        return {"n": 0}
    return {
        "n": len(seconds),
        "p50_ms": round(statistics.median(seconds) * 1000, 1),
        "p99_ms": round(pct(seconds, 0.99) * 1000, 1),
        "max_ms": round(max(seconds) * 1000, 1),
    }


# --- set-up through the project's own services --------------------------------------------------------------

RUN = secrets.token_hex(3)
RECORDER_SETTINGS = {"symbol": "ES", "sl_enabled": True, "sl_amount": 8}
TARGETS = [{"value": 8, "trim": None}]


def new_user(tag: str):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(
        f"bench-{RUN}-{tag}", f"{tag}@bench.invalid", None, approval_status="approved"
    )


def paper_pairs(tag: str, count: int) -> list[dict]:
    """`count` users, each with a recorder and one paper trader on its own paper account."""
    from trading.services import broker_accounts, recorders, traders

    pairs = []
    for number in range(count):
        user = new_user(f"{tag}-{number}")
        account = broker_accounts.broker_account_create(owner=user, name=f"Paper {tag} {number}")
        recorder = recorders.recorder_create(
            owner=user, name=f"{tag} {number}", tp_targets=TARGETS, **RECORDER_SETTINGS
        )
        trader = traders.trader_create(owner=user, recorder=recorder, account=account)
        pairs.append(
            {
                "recorder": recorder.pk,
                "token": recorder.webhook_token,
                "account": account.pk,
                "trader": trader.pk,
            }
        )
    return pairs


def tradovate_trader(user, recorder, fake, fake_account_id: int, fake_account_name: str):
    from trading.brokers.base import SubAccount
    from trading.models import BrokerAccount
    from trading.services import broker_accounts, traders
    from trading.tests import fake_tradovate as fake_module

    account = broker_accounts.broker_account_create(
        owner=user,
        name=f"Tradovate {fake_account_name}",
        kind=BrokerAccount.Kind.TRADOVATE,
        is_demo=True,
        username=fake_module.USERNAME,
        password=fake_module.PASSWORD,
    )
    broker_accounts.broker_account_sync_subaccounts(
        account=account, subaccounts=[SubAccount(str(fake_account_id), fake_account_name, True)]
    )
    return traders.trader_create(
        owner=user, recorder=recorder, account=account, subaccounts=[(str(fake_account_id), 1)]
    )


def fake_add_accounts(fake, first_id: int, count: int) -> list[tuple[int, str]]:
    added = [(first_id + n, f"BENCH{first_id + n}") for n in range(count)]
    with fake.lock:
        for account_id, name in added:
            fake.accounts.append(
                {"id": account_id, "name": name, "userId": 1, "accountType": "Customer", "active": True}
            )
    return added


# --- waiting for the pipeline and reading what it did -------------------------------------------------------


def signal_ids_of(sent: list[Sent]) -> list[int]:
    return [s.answer["signal"] for s in sent if s.status == 200 and s.answer.get("status") == "accepted"]


def wait_settled(signal_ids: list[int], timeout: float) -> bool:
    """Until every signal and each of its decisions has a final status (or `timeout` seconds)."""
    from django.db import close_old_connections

    from trading.models import Decision, Signal

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        open_signals = Signal.objects.filter(pk__in=signal_ids).exclude(status__in=FINAL_SIGNAL).exists()
        open_decisions = (
            Decision.objects.filter(signal_id__in=signal_ids).exclude(status__in=FINAL_DECISION).exists()
        )
        if not open_signals and not open_decisions:
            return True
        close_old_connections()
        time.sleep(0.2)
    return False


def duplicates(signal_ids: list[int]) -> dict[str, int]:
    """Doubled work: two decisions for a signal and trader, two entries for a decision, a client id twice."""
    from django.db.models import Count

    from trading.models import Decision, Order, PaperOrder

    orders = Order.objects.filter(signal_id__in=signal_ids)
    return {
        "decisions_twice": Decision.objects.filter(signal_id__in=signal_ids)
        .values("signal_id", "trader_id")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
        .count(),
        "entries_twice": orders.filter(role="entry")
        .values("decision_id", "account_id")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
        .count(),
        "order_client_id_twice": orders.values("client_id").annotate(n=Count("pk")).filter(n__gt=1).count(),
        "paper_client_id_twice": PaperOrder.objects.filter(client_id__in=orders.values("client_id"))
        .values("broker_account_id", "client_id")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
        .count(),
    }


def lost(sent: list[Sent]) -> int:
    """Answered 200 "accepted" but no stored signal with that id."""
    from trading.models import Signal

    ids = signal_ids_of(sent)
    return len(ids) - Signal.objects.filter(pk__in=ids).count()
