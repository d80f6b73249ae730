"""Benchmark the alert -> broker pipeline as production runs it (issue 12): `make bench`.

Starts, on 127.0.0.1 only and in a temp folder removed at the end: its own PostgreSQL 15 (fsync off), its own
Redis, gunicorn with the README's production flags, the README's Celery processes (orders/default worker,
reconcile worker, beat), a ceiling-B web process, and the test suite's fake Tradovate (with an answer delay
and an arrival log) in this process. Creates users, paper and Tradovate accounts, recorders and traders
through trading.services, then runs the scenarios and reports JSON (bench/results/) and a short table.

    .venv/bin/python bench/pipeline.py                     # everything, full sizes
    .venv/bin/python bench/pipeline.py --quick             # small sizes, a minute or two
    .venv/bin/python bench/pipeline.py --only barclose,fanout --profile

Every scenario is bounded in count and time; the whole run stops itself after --max-seconds.
Process command lines live in ONE place, process_table(): change it when the task/queue layout changes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
BIN = Path(sys.executable).parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")
RESULTS = PROJECT / "bench" / "results"
LUA = PROJECT / "bench" / "alerts.lua"

# The README's "Running in production" web flags. Change them here, and only here.
GUNICORN_FLAGS = ["--workers", "4", "--threads", "4"]
ORDER_PATHS = ("/order/placeoso", "/order/placeorder", "/order/placeoco", "/order/liquidateposition")
FINAL_SIGNAL = {"processed", "refused", "rejected", "ignored", "stale", "blocked", "failed"}
FINAL_DECISION = {"executed", "nothing", "refused", "blocked", "stale", "failed", "unsettled"}
SCENARIOS = ("ingest", "queries", "idle", "barclose", "mixed", "fanout")


# --- the processes: the one place to adapt when the pipeline's tasks and queues change ----------------------


@dataclass
class ProcessSpec:
    """One long-running process: its command line, extra environment, and how to tell it is ready."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ready: str = ""  # "http:<port>" (GET /healthz answers) or "celery:<hostname prefix>" (answers a ping)
    profile_children: bool = False  # py-spy its children (prefork pool, gunicorn workers), not the parent


def process_table(stack: Stack) -> dict[str, ProcessSpec]:
    """Every process the bench starts, as the README's production section runs them.

    `worker`, `reconciler` and `beat` form the pipeline ("pipeline" group below); when the task or queue
    layout changes, change these lines (and PIPELINE) and nothing else.
    """
    gunicorn, celery = str(BIN / "gunicorn"), str(BIN / "celery")
    web = [gunicorn, "justtrades.wsgi", "--bind", f"127.0.0.1:{stack.web_port}", *GUNICORN_FLAGS]
    ceiling = [gunicorn, "justtrades.wsgi", "--bind", f"127.0.0.1:{stack.ceiling_port}", *GUNICORN_FLAGS]
    quiet = ["--log-level", "warning"]
    return {
        "web": ProcessSpec(web + quiet, ready=f"http:{stack.web_port}", profile_children=True),
        # The ab burst repeats one body: body de-duplication off, so each copy is one stored signal (README).
        "web_nodedup": ProcessSpec(
            web + quiet, {"WEBHOOK_DEDUP_SECONDS": "0"}, ready=f"http:{stack.web_port}", profile_children=True
        ),
        "ceiling": ProcessSpec(
            ceiling + quiet,
            {"DJANGO_SETTINGS_MODULE": "bench.settings_ceiling"},
            ready=f"http:{stack.ceiling_port}",
            profile_children=True,
        ),
        "worker": ProcessSpec(
            [celery, "-A", "justtrades", "worker", "--queues", "default,orders", "--concurrency", "4"]
            + ["--loglevel", "WARNING"],
            ready="celery:celery@",
            profile_children=True,
        ),
        "reconciler": ProcessSpec(
            [celery, "-A", "justtrades", "worker", "--queues", "reconcile", "--concurrency", "2"]
            + ["--hostname", "reconcile@%h", "--loglevel", "WARNING"],
            ready="celery:reconcile@",
            profile_children=True,
        ),
        "beat": ProcessSpec(
            [celery, "-A", "justtrades", "beat", "--schedule", str(stack.work / "celerybeat-schedule")]
            + ["--loglevel", "WARNING"]
        ),
    }


PIPELINE = ("worker", "reconciler", "beat")  # started after ingest; the web process runs beside them
PROFILED_WORKER = "worker"  # the process whose pool children py-spy records during the bar close


# --- the stack ----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_as_postgres(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *argv], check=check, capture_output=True, text=True)


class Stack:
    """PostgreSQL, Redis, the fake Tradovate and the product's processes; stop() ends all of it."""

    def __init__(self, fake_delay: float) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="justtrades-bench-"))
        self.work.chmod(0o755)
        self.pg_port, self.redis_port = free_port(), free_port()
        self.web_port, self.ceiling_port = free_port(), free_port()
        self.processes: dict[str, subprocess.Popen] = {}
        self.memory = MemorySampler()
        self.fake = None
        self.fake_delay = fake_delay
        self.pg_started = False
        self.env: dict[str, str] = {}

    # infrastructure

    def start_infrastructure(self) -> None:
        pg = self.work / "pg"
        pg.mkdir()
        if os.geteuid() == 0:
            shutil.chown(pg, "postgres")
        log(f"PostgreSQL 15 on 127.0.0.1:{self.pg_port} (fsync off), Redis on 127.0.0.1:{self.redis_port}")
        run_as_postgres(
            str(PG_BIN / "initdb"), "-D", str(pg / "data"), "-U", "postgres", "-A", "trust", "--no-sync"
        )
        options = f"-h 127.0.0.1 -p {self.pg_port} -k {pg} -c fsync=off -c max_connections=400"
        run_as_postgres(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(pg / "data"),
            "-l",
            str(pg / "log"),
            "-w",
            "-o",
            options,
            "start",
        )
        self.pg_started = True
        run_as_postgres(
            str(PG_BIN / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.pg_port),
            "-U",
            "postgres",
            "justtrades",
        )
        redis_dir = self.work / "redis"
        redis_dir.mkdir()
        subprocess.run(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port), "--daemonize", "yes"]
            + ["--dir", str(redis_dir), "--pidfile", str(redis_dir / "redis.pid"), "--save", ""]
            + ["--appendonly", "no", "--logfile", str(redis_dir / "log")],
            check=True,
        )
        for _ in range(100):
            if (
                subprocess.run(
                    ["redis-cli", "-p", str(self.redis_port), "ping"], capture_output=True
                ).returncode
                == 0
            ):
                break
            time.sleep(0.05)

    def start_fake(self) -> None:
        from trading.tests.fake_tradovate import FakeTradovate

        self.fake = FakeTradovate(answer_delay=self.fake_delay)
        self.fake.start()
        log(f"fake Tradovate at {self.fake.base_url} (answer delay {self.fake_delay * 1000:.0f} ms)")

    def configure_environment(self) -> None:
        from cryptography.fernet import Fernet

        from trading.tests import fake_tradovate as fake_module

        state = self.work / "var"
        state.mkdir()
        self.env = {
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "ENV_FILE": "/dev/null",  # never the project folder's .env
            "VAR_DIR": str(state),
            "LOG_LEVEL": "WARNING",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{self.pg_port}/justtrades",
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "TRADOVATE_DEMO_URL": self.fake.base_url,
            "TRADOVATE_LIVE_URL": "http://127.0.0.1:9/v1",  # nothing listens there
            "TRADOVATE_APP_ID": fake_module.APP_ID,
            "TRADOVATE_APP_VERSION": fake_module.APP_VERSION,
            "TRADOVATE_CID": str(fake_module.CID),
            "TRADOVATE_SEC": fake_module.SEC,
        }
        os.environ.update(self.env)
        os.environ["DJANGO_SETTINGS_MODULE"] = "justtrades.settings"

    def migrate(self) -> None:
        log("migrating a fresh database")
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=PROJECT,
            env={**os.environ},
            check=True,
        )

    # product processes

    def start(self, name: str) -> subprocess.Popen:
        spec = process_table(self)[name]
        logfile = open(self.work / f"{name}.log", "ab")  # noqa: SIM115 closed with the process
        process = subprocess.Popen(
            spec.argv,
            cwd=PROJECT,
            env={**os.environ, **spec.env},
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = process
        self.memory.watch(name, process.pid)
        return process

    def wait_ready(self, names: Iterable[str], timeout: float = 90) -> None:
        table = process_table(self)
        deadline = time.monotonic() + timeout
        for name in names:
            ready = table[name].ready
            while ready:
                if self.processes[name].poll() is not None:
                    raise SystemExit(f"{name} exited at start:\n{self.tail(name)}")
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name} not ready within {timeout} s:\n{self.tail(name)}")
                if ready.startswith("http:") and http_ok(int(ready[5:])):
                    break
                if ready.startswith("celery:") and celery_answers(ready[7:]):
                    break
                time.sleep(0.25)

    def stop_process(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is None:
            return
        self.memory.sample()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # its own session: the process and its children only
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        self.memory.unwatch(name)

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.work / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        for name in list(self.processes):
            self.stop_process(name)
        if self.fake is not None:
            self.fake.stop()
        pidfile = self.work / "redis" / "redis.pid"
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
        if self.pg_started:
            run_as_postgres(
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.work / "pg" / "data"),
                "-m",
                "fast",
                "stop",
                check=False,
            )
        shutil.rmtree(self.work, ignore_errors=True)


def http_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def celery_answers(prefix: str) -> bool:
    from justtrades.celery import app

    try:
        replies = app.control.ping(timeout=0.5) or []
    except Exception:
        return False
    return any(name.startswith(prefix) for reply in replies for name in reply)


def children(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(p) for p in (task / "children").read_text().split()]
    return found


class MemorySampler:
    """Peak resident memory (VmHWM, and VmRSS sampled every half second) of each process and its children."""

    def __init__(self) -> None:
        self.roots: dict[str, int] = {}
        self.all_roots: set[int] = set()
        self.peaks: dict[str, dict[int, int]] = {}  # name -> pid -> peak kB
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="memory-sampler")
        self.thread.start()

    def watch(self, name: str, pid: int) -> None:
        with self.lock:
            self.roots[name] = pid
            self.all_roots.add(pid)
            self.peaks.setdefault(name, {})

    def unwatch(self, name: str) -> None:
        with self.lock:
            self.roots.pop(name, None)

    def _loop(self) -> None:
        while not self.stopping.wait(0.5):
            self.sample()

    def sample(self) -> None:
        with self.lock:
            for name, root in self.roots.items():
                for pid in [root, *children(root)]:
                    peak = rss_peak_kb(pid)
                    if peak:
                        table = self.peaks[name]
                        table[pid] = max(table.get(pid, 0), peak)

    def report(self) -> dict[str, Any]:
        out = {}
        for name, table in self.peaks.items():
            parent = [kb for pid, kb in table.items() if pid in self.all_roots]
            kids = sorted((kb for pid, kb in table.items() if pid not in self.all_roots), reverse=True)
            out[name] = {
                "parent_peak_mb": round(max(parent) / 1024, 1) if parent else None,
                "children_peak_mb": [round(kb / 1024, 1) for kb in kids],
                "max_child_mb": round(kids[0] / 1024, 1) if kids else None,
            }
        return out


def rss_peak_kb(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    values = dict(re.findall(r"^(VmHWM|VmRSS):\s+(\d+) kB", text, re.M))
    return max(int(values.get("VmHWM", 0)), int(values.get("VmRSS", 0)))


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


# --- profiling ----------------------------------------------------------------------------------------------


class Profiler:
    """py-spy record (raw collapsed stacks) on a process's children; bench/profile_summary.py sums them."""

    def __init__(self, name: str, runs: list[tuple[subprocess.Popen, Path]], work: Path) -> None:
        self.name, self.runs, self.work = name, runs, work

    @classmethod
    def start(
        cls, stack: Stack, process: str, name: str, seconds: float, *, idle: bool, first_only: bool = False
    ):
        root = stack.processes[process].pid
        pids = children(root) or [root]
        if first_only:
            pids = pids[:1]
        runs = []
        for pid in pids:
            out = stack.work / f"{name}-{pid}.txt"
            argv = [str(BIN / "py-spy"), "record", "--pid", str(pid), "--format", "raw", "-o", str(out)]
            argv += ["--duration", str(int(seconds)), "--rate", "100", "--nonblocking"] + (
                ["--idle"] if idle else []
            )
            runs.append((subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out))
        return cls(name, runs, stack.work)

    def finish(self, *, interrupt: bool = False) -> dict:
        from bench.profile_summary import summarise

        for process, _ in self.runs:
            if interrupt:
                process.send_signal(signal.SIGINT)  # py-spy writes what it has so far
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGINT)
                process.wait(timeout=10)
        merged = RESULTS / f"profile-{self.name}-{datetime.now(UTC):%Y%m%dT%H%M%S}.txt"
        with merged.open("w") as sink:
            for _, out in self.runs:
                if out.exists():
                    sink.write(out.read_text())
        return {"collapsed_stacks": str(merged.relative_to(PROJECT)), **summarise(merged)}


# --- main ---------------------------------------------------------------------------------------------------

stack_ref: Stack


def ensure_tools() -> None:
    missing = [
        tool
        for tool, package in (("wrk", "wrk"), ("ab", "apache2-utils"), ("redis-server", "redis-server"))
        if not shutil.which(tool)
    ]
    if not missing:
        return
    packages = {"wrk": "wrk", "ab": "apache2-utils", "redis-server": "redis-server"}
    log(f"installing {' '.join(packages[m] for m in missing)} from Debian")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *(packages[m] for m in missing)], check=True, env=env)


def table(results: dict) -> str:
    rows = []

    def add(name: str, value: Any) -> None:
        rows.append(f"{name:<58} {value}")

    if "ingest" in results:
        i = results["ingest"]
        add("ingest answers/s (wrk, median of rounds)", i["answers_per_second"])
        add("ceiling B answers/s", i["ceiling_answers_per_second"])
        add("ratio to ceiling", i["ratio_to_ceiling"])
        w = i["rounds"][0]["webhook"]
        add("ingest p50 / p99 ms (round 1)", f"{w['p50_ms']} / {w['p99_ms']}")
        b, c = i["burst"]["webhook"], i["burst"]["ceiling"]
        add(
            f"burst {b['complete']} (ab -c 200): s, p99, max ms",
            f"{b['seconds']} s, {b['p99_ms']}, {b['max_ms']}",
        )
        add("ceiling burst: s, p99, max ms", f"{c['seconds']} s, {c['p99_ms']}, {c['max_ms']}")
        add("ingest lost (wrk, burst)", f"{i['wrk_lost']}, {i['burst_lost']}")
    if "queries" in results:
        for label, phases in results["queries"]["alerts"].items():
            add(f"SQL per paper alert, {label}", " ".join(f"{k}={v['total']}" for k, v in phases.items()))
    if "idle" in results:
        for key in ("no_delay", "with_delay"):
            d = results["idle"][key]
            add(
                f"idle alert->placeoso p50/p99 ms ({key})",
                f"{d['entry_placeoso'].get('p50_ms')} / {d['entry_placeoso'].get('p99_ms')}",
            )
    if "barclose" in results:
        for size, r in results["barclose"].items():
            s = r["send_to_paper_order"]
            add(
                f"bar close {size}: send->paper order p50/p99/max ms",
                f"{s.get('p50_ms')} / {s.get('p99_ms')} / {s.get('max_ms')} ({s['n']} orders)",
            )
            w = r["signal_wait_to_processed"]
            add(
                f"bar close {size}: signal wait p50/max ms, stale",
                f"{w.get('p50_ms')} / {w.get('max_ms')}, {r['stale_decisions']}",
            )
    if "mixed" in results:
        m = results["mixed"]
        add(
            f"mixed {m['alerts']}/{m['recorders']}: settled/s, stale decisions",
            f"{m['settled_per_second']}, {m['stale_decisions']} of {sum(m['decision_status'].values())}",
        )
        add("mixed: lost, duplicated", f"{m['lost']}, {sum(m['duplicated'].values())}")
    if "fanout" in results:
        f = results["fanout"]
        for key in ("cold_buy", "warm_buy"):
            add(
                f"fan-out {f['accounts']} accounts ({key}): first/last ms",
                f"{f[key]['first_ms']} / {f[key]['last_ms']} ({f[key]['accounts_reached']} reached)",
            )
    for name, m in results.get("memory", {}).items():
        add(f"peak RSS MB {name}: parent, largest child", f"{m['parent_peak_mb']}, {m['max_child_mb']}")
    return "\n".join(rows)


def main() -> None:
    global stack_ref
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {','.join(SCENARIOS)}"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes for a quick check")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy a gunicorn worker (ingest) and the orders worker's pool (bar close)",
    )
    parser.add_argument("--fake-delay-ms", type=float, default=20.0)
    parser.add_argument("--wrk-seconds", type=int, default=None)
    parser.add_argument("--ingest-rounds", type=int, default=None)
    parser.add_argument("--burst", type=int, default=None)
    parser.add_argument("--idle", type=int, default=None, help="alerts per idle run (alternating buy/close)")
    parser.add_argument("--barclose", default=None, help="recorder counts, e.g. 50,200")
    parser.add_argument("--mixed", default=None, help="recorders x alerts each, e.g. 50x20")
    parser.add_argument("--fanout", type=int, default=None)
    parser.add_argument("--settle-timeout", type=float, default=240.0)
    parser.add_argument(
        "--max-seconds", type=float, default=1800.0, help="the whole run stops itself after this"
    )
    parser.add_argument("--output", default=None, help="JSON file (default bench/results/<time>.json)")
    options = parser.parse_args()
    quick = options.quick
    options.wrk_seconds = options.wrk_seconds or (4 if quick else 10)
    options.ingest_rounds = options.ingest_rounds or (1 if quick else 2)
    options.burst = options.burst or (400 if quick else 2000)
    options.idle = options.idle or (10 if quick else 50)
    options.barclose = [int(x) for x in (options.barclose or ("20" if quick else "50,200")).split(",")]
    options.mixed = tuple(int(x) for x in (options.mixed or ("10x6" if quick else "50x20")).split("x"))
    options.fanout = options.fanout or (10 if quick else 100)
    only = [name.strip() for name in options.only.split(",") if name.strip()]
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")

    ensure_tools()
    stack = stack_ref = Stack(options.fake_delay_ms / 1000)

    def stop_now(signum, frame):
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, stop_now)
    timer = threading.Timer(options.max_seconds, lambda: os.kill(os.getpid(), signal.SIGTERM))
    timer.daemon = True
    timer.start()
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT, capture_output=True, text=True
        ).stdout.strip(),
        "machine": {"cpus": os.cpu_count(), "load_at_start": os.getloadavg()},
        "options": dict(vars(options)),
    }
    try:
        stack.start_infrastructure()
        stack.start_fake()
        stack.configure_environment()
        stack.migrate()
        import django

        django.setup()
        if "ingest" in only:
            scenario_ingest(stack, options, results)
        if "queries" in only:
            scenario_queries(stack, options, results)
        pipeline_scenarios = [name for name in only if name in ("idle", "barclose", "mixed", "fanout")]
        if pipeline_scenarios:
            retire_unprocessed(stack)
            for name in ("web", *PIPELINE):
                stack.start(name)
            stack.wait_ready(["web", *PIPELINE])
            time.sleep(2)  # beat's first reconcile round and worker start-up settle
            for name in pipeline_scenarios:
                if True:
                    {
                        "idle": scenario_idle,
                        "barclose": scenario_barclose,
                        "mixed": scenario_mixed,
                        "fanout": scenario_fanout,
                    }[name](stack, options, results)
        stack.memory.sample()
        results["memory"] = stack.memory.report()
    finally:
        timer.cancel()
        log("stopping every process and removing the temp folder")
        stack.memory.stopping.set()
        stack.stop()
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    RESULTS.mkdir(exist_ok=True)
    output = Path(options.output) if options.output else RESULTS / f"{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(table(results))
    print(f"JSON: {output}")


if __name__ == "__main__":
    main()
