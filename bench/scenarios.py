"""The benchmark's scenarios: ingest against ceiling B, queries, idle, bar close, mixed and fan-out."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import secrets
import statistics
import subprocess
import time
from collections import Counter
from pathlib import Path

from bench.load import (
    FINAL_SIGNAL,
    RECORDER_SETTINGS,
    TARGETS,
    alert,
    duplicates,
    fake_add_accounts,
    fire,
    lost,
    ms_stats,
    new_user,
    paper_pairs,
    signal_ids_of,
    tradovate_trader,
    wait_settled,
)
from bench.stack import GUNICORN_FLAGS, ORDER_PATHS, PROFILED_WORKER, PROJECT, Profiler, Stack, log

LUA = PROJECT / "bench" / "alerts.lua"
SCENARIOS = ("ingest", "queries", "idle", "barclose", "mixed", "fanout")

# --- scenarios ----------------------------------------------------------------------------------------------


def run_wrk(url: str, seconds: int, prefix: str) -> dict:
    result = subprocess.run(
        ["wrk", "-t", "2", "-c", "64", "-d", f"{seconds}s", "--timeout", "10s", "-s", str(LUA), url],
        capture_output=True,
        text=True,
        env={**os.environ, "BENCH_ALERT_PREFIX": prefix},
        timeout=seconds + 60,
    )
    line = next((x for x in result.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no summary:\n{result.stdout}\n{result.stderr}")
    raw = json.loads(line[8:])
    return {
        "answers_per_second": round(raw["ok"] / (raw["duration_us"] / 1e6), 1),
        "p50_ms": round(raw["p50_us"] / 1000, 1),
        "p99_ms": round(raw["p99_us"] / 1000, 1),
        "max_ms": round(raw["max_us"] / 1000, 1),
        **{k: raw[k] for k in ("requests", "ok", "non200", "connect_errors", "read_errors", "timeouts")},
    }


def run_ab(url: str, body: Path, total: int, concurrency: int, work: Path) -> dict:
    percentiles = work / f"ab-{secrets.token_hex(3)}.csv"
    result = subprocess.run(
        ["ab", "-q", "-n", str(total), "-c", str(concurrency), "-s", "30", "-r", "-p", str(body)]
        + ["-T", "application/json", "-e", str(percentiles), url],
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = result.stdout

    def number(label: str) -> float:
        match = re.search(rf"^{label}:\s+([\d.]+)", out, re.M)
        return float(match.group(1)) if match else 0.0

    table = {}
    with contextlib.suppress(OSError):
        for row in csv.reader(percentiles.read_text().splitlines()[1:]):
            table[int(float(row[0]))] = float(row[1])
    return {
        "seconds": number("Time taken for tests"),
        "complete": int(number("Complete requests")),
        "failed": int(number("Failed requests")),
        # ab counts an answer whose length differs from the first one's as failed: signal ids vary in width.
        "failed_breakdown": (re.search(r"\(Connect: .*?\)", out) or re.search("", "")).group(0),
        "non2xx": int(number("Non-2xx responses")),
        "p50_ms": table.get(50),
        "p99_ms": table.get(99),
        "max_ms": table.get(100),
    }


def scenario_ingest(stack: Stack, options, results: dict) -> None:
    """Answers a second (wrk) and a 2,000-alert burst (ab) against ceiling B, no worker running."""
    from django.db import connection

    from bench.ceiling.views import CREATE_TABLE
    from trading.models import Signal
    from trading.services import recorders

    with connection.cursor() as cursor:
        cursor.execute(CREATE_TABLE)
    user = new_user("ingest")
    recorder = recorders.recorder_create(owner=user, name="ingest", symbol="ES")
    burst_recorder = recorders.recorder_create(owner=user, name="ingest burst", symbol="ES")
    webhook_url = f"http://127.0.0.1:{stack.web_port}/webhook/{recorder.webhook_token}"
    ceiling_url = f"http://127.0.0.1:{stack.ceiling_port}/webhook/ceiling/bench"
    rounds = []
    for number in range(options.ingest_rounds):
        round_result = {}
        for name, url in (("webhook", webhook_url), ("ceiling", ceiling_url)):
            process = "web" if name == "webhook" else "ceiling"
            port = stack.web_port if name == "webhook" else stack.ceiling_port
            stack.start(process)
            stack.wait_ready([process])
            # Warm every worker (imports, pooled connections) before measuring.
            path = url.split(str(port), 1)[1]
            fire(port, [(path, alert("buy", f"warm-{name}-{number}-{n}")) for n in range(32)], 8)
            profiler = None
            if options.profile and name == "webhook" and number == 0:
                profiler = Profiler.start(
                    stack, process, "ingest-web", options.wrk_seconds, idle=False, first_only=True
                )
            log(f"ingest round {number + 1}: wrk on {name} for {options.wrk_seconds} s")
            round_result[name] = run_wrk(url, options.wrk_seconds, f"wrk-{number}")
            if profiler:
                round_result["profile"] = profiler.finish()
            stack.stop_process(process)
        round_result["ratio"] = round(
            round_result["webhook"]["answers_per_second"] / round_result["ceiling"]["answers_per_second"], 3
        )
        rounds.append(round_result)
    stored = Signal.objects.filter(recorder=recorder, alert_id__startswith="wrk-").count()
    answered = sum(r["webhook"]["ok"] for r in rounds)

    body = stack.work / "burst.json"
    body.write_text(json.dumps({"action": "buy", "ticker": "ES1!", "contracts": 1, "price": 5000.25}))
    bursts = {}
    for name, process, url in (
        (
            "webhook",
            "web_nodedup",
            f"http://127.0.0.1:{stack.web_port}/webhook/{burst_recorder.webhook_token}",
        ),
        ("ceiling", "ceiling", ceiling_url),
    ):
        stack.start(process)
        stack.wait_ready([process])
        log(f"ingest burst: ab -n {options.burst} -c 200 on {name}")
        bursts[name] = run_ab(url, body, options.burst, 200, stack.work)
        stack.stop_process(process)
    burst_stored = Signal.objects.filter(recorder=burst_recorder).count()
    results["ingest"] = {
        "gunicorn_flags": " ".join(GUNICORN_FLAGS),
        "wrk": "64 connections, 2 threads, Connection: close, unique alert ids; latency excludes connect",
        "rounds": rounds,
        "answers_per_second": statistics.median(r["webhook"]["answers_per_second"] for r in rounds),
        "ceiling_answers_per_second": statistics.median(r["ceiling"]["answers_per_second"] for r in rounds),
        "ratio_to_ceiling": statistics.median(r["ratio"] for r in rounds),
        "wrk_answered_200": answered,
        "wrk_stored": stored,
        "wrk_lost": max(0, answered - stored),
        "burst": bursts,
        "burst_note": "ab repeats one body: the web process runs with WEBHOOK_DEDUP_SECONDS=0 for it, "
        "so each copy is one stored signal",
        "burst_stored": burst_stored,
        "burst_lost": max(0, bursts["webhook"]["complete"] - bursts["webhook"]["non2xx"] - burst_stored),
    }


def scenario_queries(stack: Stack, options, results: dict) -> None:
    """SQL statements per phase for paper alerts, run in this process (no worker running)."""
    from bench.query_count import count_paper_alert

    results["queries"] = count_paper_alert(new_user("queries"))


def retire_unprocessed(stack: Stack) -> None:
    """Ingest and query-count signals must not become work for the workers started after them."""
    from trading.models import Signal

    retired = Signal.objects.filter(status="pending").update(
        status="ignored", reason="bench: ingest only, never processed"
    )
    subprocess.run(["redis-cli", "-p", str(stack.redis_port), "flushall"], capture_output=True, check=True)
    log(f"retired {retired} ingest signals and emptied Redis before the workers start")


def scenario_idle(stack: Stack, options, results: dict) -> None:
    """One alert at a time to a Tradovate (fake) account; alert start -> the fake's arrival of the order."""
    from trading.services import recorders
    from trading.tests.fake_tradovate import DEMO_ACCOUNT_ID, DEMO_ACCOUNT_NAME

    user = new_user("idle")
    recorder = recorders.recorder_create(owner=user, name="idle", tp_targets=TARGETS, **RECORDER_SETTINGS)
    tradovate_trader(user, recorder, stack.fake, DEMO_ACCOUNT_ID, DEMO_ACCOUNT_NAME)
    path = f"/webhook/{recorder.webhook_token}"
    out = {}
    for delay_name, delay in (("no_delay", 0.0), ("with_delay", stack.fake_delay)):
        stack.fake.answer_delay = delay
        for warm in ("buy", "close"):  # log in, look the contract up: not measured
            sent = fire(stack.web_port, [(path, alert(warm, f"idle-warm-{delay_name}-{warm}"))], 1)
            wait_settled(signal_ids_of(sent), 30)
        entries, closes, calls_before = [], [], []
        for number in range(options.idle):
            action = "buy" if number % 2 == 0 else "close"
            mark = len(stack.fake.requests)
            sent = fire(stack.web_port, [(path, alert(action, f"idle-{delay_name}-{number}"))], 1)
            wait_settled(signal_ids_of(sent), 30)
            arrivals = stack.fake.requests[mark:]
            order = next(
                (
                    r
                    for r in arrivals
                    if r.path in ORDER_PATHS and (r.body or {}).get("accountId") == DEMO_ACCOUNT_ID
                ),
                None,
            )
            if order is None:
                continue
            before = sum(1 for r in arrivals if r.at < order.at)
            calls_before.append(before)
            # The order's own answer delay comes after its arrival; each call answered before it waited once.
            (entries if action == "buy" else closes).append(order.at - sent[0].started - before * delay)
        out[delay_name] = {
            "fake_delay_ms": delay * 1000,
            "entry_placeoso": ms_stats(entries),
            "close_liquidate": ms_stats(closes),
            "all": ms_stats(entries + closes),
            "broker_calls_before_order": ms_stats([c / 1000 for c in calls_before])
            | {"values": sorted(set(calls_before))},
        }
    stack.fake.answer_delay = stack.fake_delay
    out["note"] = (
        "alert request start -> the fake's arrival of the order, "
        "minus (broker calls answered before it) x delay"
    )
    results["idle"] = out


def paper_burst(
    stack: Stack, pairs: list[dict], per_recorder: int, timeout: float, tag: str, profile: str = ""
) -> dict:
    """All alerts at once; per trader: send -> first paper order row (created_at) and Order.submitted_at."""
    from trading.models import Decision, Order, PaperOrder, Signal

    requests, owners = [], []
    for number in range(per_recorder):
        for pair in pairs:
            side = "buy" if number % 2 == 0 else "sell"
            requests.append(
                (
                    f"/webhook/{pair['token']}",
                    alert(side, f"{tag}-{pair['recorder']}-{number}", 5000.25 + number % 4),
                )
            )
            owners.append(pair)
    profiler = Profiler.start(stack, PROFILED_WORKER, profile, timeout, idle=True) if profile else None
    started = time.time()
    sent = fire(stack.web_port, requests, min(len(requests), 1000), timeout=60)
    answered = time.time()
    signal_ids = signal_ids_of(sent)
    settled = wait_settled(signal_ids, timeout)
    finished = time.time()
    profiled = profiler.finish(interrupt=True) if profiler else None

    by_account: dict[int, float] = {}
    for pair, item in zip(owners, sent, strict=True):
        by_account[pair["account"]] = min(by_account.get(pair["account"], item.started), item.started)
    first_paper = {}
    for account_id, created in PaperOrder.objects.filter(broker_account_id__in=by_account).values_list(
        "broker_account_id", "created_at"
    ):
        first_paper[account_id] = min(first_paper.get(account_id, created.timestamp()), created.timestamp())
    first_submit = {}
    for account_id, submitted in Order.objects.filter(
        signal_id__in=signal_ids, submitted_at__isnull=False
    ).values_list("broker_account_id", "submitted_at"):
        first_submit[account_id] = min(
            first_submit.get(account_id, submitted.timestamp()), submitted.timestamp()
        )
    to_paper = [first_paper[a] - by_account[a] for a in by_account if a in first_paper]
    to_submit = [first_submit[a] - by_account[a] for a in by_account if a in first_submit]
    signals = list(Signal.objects.filter(pk__in=signal_ids).values("status", "received_at", "processed_at"))
    waited = [(s["processed_at"] - s["received_at"]).total_seconds() for s in signals if s["processed_at"]]
    signal_status: dict[str, int] = {}
    for s in signals:
        signal_status[s["status"]] = signal_status.get(s["status"], 0) + 1
    decision_status: dict[str, int] = {}
    for status in Decision.objects.filter(signal_id__in=signal_ids).values_list("status", flat=True):
        decision_status[status] = decision_status.get(status, 0) + 1
    last_processed = max(
        (s["processed_at"].timestamp() for s in signals if s["processed_at"]), default=finished
    )
    final = sum(1 for s in signals if s["status"] in FINAL_SIGNAL)
    return {
        "recorders": len(pairs),
        "alerts": len(requests),
        "answered_200": sum(1 for s in sent if s.status == 200),
        "answers": dict(Counter(str(s.answer.get("status", s.status)) for s in sent)),
        "answer": ms_stats([s.seconds for s in sent if s.status == 200]),
        "send_to_paper_order": ms_stats(to_paper),
        "send_to_order_submitted": ms_stats(to_submit),
        "signal_wait_to_processed": ms_stats(waited),
        "accounts_with_an_order": len(to_paper),
        "signal_status": signal_status,
        "decision_status": decision_status,
        "stale_decisions": decision_status.get("stale", 0),
        "settled_per_second": round(final / max(1e-3, last_processed - started), 1),
        "seconds_to_send": round(answered - started, 2),
        "settled_within_timeout": settled,
        "lost": lost(sent),
        "duplicated": duplicates(signal_ids),
        **({"profile": profiled} if profiled else {}),
    }


def scenario_barclose(stack: Stack, options, results: dict) -> None:
    out = {}
    for size in options.barclose:
        pairs = paper_pairs(f"barclose{size}", size)
        log(f"bar close: {size} recorders, one alert each at once")
        profile = f"barclose{size}-worker" if options.profile else ""
        out[str(size)] = paper_burst(stack, pairs, 1, options.settle_timeout, f"bc{size}", profile)
    results["barclose"] = out


def scenario_mixed(stack: Stack, options, results: dict) -> None:
    recorders, per = options.mixed
    pairs = paper_pairs("mixed", recorders)
    log(
        f"mixed: {recorders * per} alerts over {recorders} recorders ({per} each, alternating sides), "
        "all at once"
    )
    results["mixed"] = paper_burst(stack, pairs, per, options.settle_timeout, "mx")


def scenario_fanout(stack: Stack, options, results: dict) -> None:
    """One alert to one recorder followed by N traders, each on its own Tradovate account at the fake."""
    from trading.services import recorders

    user = new_user("fanout")
    recorder = recorders.recorder_create(owner=user, name="fanout", tp_targets=TARGETS, **RECORDER_SETTINGS)
    accounts = fake_add_accounts(stack.fake, 200_000, options.fanout)
    for account_id, name in accounts:
        tradovate_trader(user, recorder, stack.fake, account_id, name)
    wanted = {account_id for account_id, _ in accounts}
    path = f"/webhook/{recorder.webhook_token}"
    out = {"accounts": len(accounts), "fake_delay_ms": stack.fake_delay * 1000}
    for label, action in (("cold_buy", "buy"), ("close", "close"), ("warm_buy", "buy")):
        mark = len(stack.fake.requests)
        sent = fire(stack.web_port, [(path, alert(action, f"fanout-{label}"))], 1)
        settled = wait_settled(signal_ids_of(sent), options.settle_timeout)
        first: dict[int, float] = {}
        for request in stack.fake.requests[mark:]:
            account_id = (request.body or {}).get("accountId")
            if request.path in ORDER_PATHS and account_id in wanted and account_id not in first:
                first[account_id] = request.at
        times = sorted(t - sent[0].started for t in first.values())
        out[label] = {
            "accounts_reached": len(first),
            "first_ms": round(times[0] * 1000, 1) if times else None,
            "p50_ms": round(statistics.median(times) * 1000, 1) if times else None,
            "last_ms": round(times[-1] * 1000, 1) if times else None,
            "settled": settled,
            "duplicated": duplicates(signal_ids_of(sent)),
        }
    out["note"] = (
        "cold_buy includes each account's first login and contract look-up; warm_buy is the steady state"
    )
    results["fanout"] = out
