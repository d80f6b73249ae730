"""Benchmark the webhook hot path: a burst of distinct TradingView alerts against gunicorn on this machine.

Starts an isolated JustTrades (its own state folder and, by default, its own SQLite database), creates one
recorder, fires ALERTS alerts from CONCURRENCY connections at once, and reports throughput and latency
percentiles. It then checks durability: every alert answered 200 must be a stored signal, none twice.

    .venv/bin/python bench/webhook_burst.py --alerts 2000 --concurrency 100
    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/webhook_burst.py

Targets (DEVELOPERS.md): well over 1,000 durable alerts a second on 2 cores; a 2,000-alert burst answered with
p99 under 250 ms. Only 127.0.0.1 is ever contacted; the run is bounded by --alerts and --timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from cryptography.fernet import Fernet

PROJECT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

SETUP = """
from django.contrib.auth import get_user_model
import secrets
user = get_user_model().objects.create_user(
    "bench-" + secrets.token_hex(4), "bench@example.com", secrets.token_urlsafe(16),
    approval_status="approved",
)
recorder = recorder_create(owner=user, name="Bench ES", symbol="ES")
print("RECORDER=" + str(recorder.pk))
print("TOKEN=" + recorder.webhook_token)
"""

COUNT = """
from trading.models import Signal
print("SIGNALS=" + str(Signal.objects.filter(recorder_id=RECORDER_ID).count()))
"""


def free_port() -> int:
    """Ask the kernel for a free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def manage(env: dict[str, str], code: str) -> str:
    """Run Python in the project's Django shell and return what it printed."""
    result = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", code],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"manage.py shell failed:\n{result.stderr}")
    return result.stdout


def alert_body(number: int, run: str) -> bytes:
    """A distinct alert in the shape of the recorder page's ready-to-paste message."""
    side = "buy" if number % 2 == 0 else "sell"
    return json.dumps(
        {
            "action": side,
            "ticker": "ES1!",
            "contracts": 1,
            "price": 5000.25 + number % 40,
            "market_position": "long" if side == "buy" else "short",
            "id": f"bench-{run}-{number}",
        }
    ).encode()


async def post(port: int, path: str, body: bytes) -> tuple[int, float]:
    """POST one alert on a fresh connection, as TradingView does; return status and seconds taken."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    elapsed = time.perf_counter() - started
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return status, elapsed


async def burst(port: int, path: str, alerts: int, concurrency: int, timeout: float) -> tuple[list, float]:
    """Send every alert at once through a bounded number of simultaneous connections."""
    run = secrets.token_hex(4)
    gate = asyncio.Semaphore(concurrency)
    results: list[tuple[int, float]] = []

    async def one(number: int) -> None:
        async with gate:
            try:
                results.append(await post(port, path, alert_body(number, run)))
            except OSError:
                results.append((0, 0.0))

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(alerts))), timeout)
    return results, time.perf_counter() - started


def process_cpu_seconds(root_pid: int) -> float:
    """CPU seconds used so far by a process and its direct children (gunicorn's master and workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    pids = [root_pid]
    with contextlib.suppress(OSError):
        pids += [int(p) for p in Path(f"/proc/{root_pid}/task/{root_pid}/children").read_text().split()]
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return total


def percentile(values: list[float], fraction: float) -> float:
    """The value below which the given fraction of sorted values falls."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    """Set up, run the burst, check durability, print a summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument(
        "--threads", type=int, default=1, help="gunicorn threads per worker (gthread when > 1)"
    )
    parser.add_argument("--timeout", type=float, default=120.0)
    options = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="justtrades-bench-"))
    env = {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "VAR_DIR": str(state),
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": os.environ.get("DATABASE_URL", f"sqlite:///{state / 'bench.sqlite3'}"),
    }
    subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v0"], cwd=PROJECT, env=env, check=True)
    created = manage(env, SETUP)
    recorder_id = int(created.split("RECORDER=", 1)[1].split()[0])
    token = created.split("TOKEN=", 1)[1].strip()
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(PYTHON).parent / "gunicorn"),
            "justtrades.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(options.web_workers),
            "--threads",
            str(options.threads),
            "--backlog",
            "4096",
            "--log-level",
            "warning",
        ],
        cwd=PROJECT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("gunicorn did not answer /healthz within 30 s") from None
                time.sleep(0.2)
        # One warm-up request per worker process, so imports and connections are not measured.
        asyncio.run(burst(port, f"/webhook/{token}", options.web_workers * 2, options.web_workers, 30))
        server_cpu_before = process_cpu_seconds(server.pid)
        client_cpu_before = time.process_time()
        results, wall = asyncio.run(
            burst(port, f"/webhook/{token}", options.alerts, options.concurrency, options.timeout)
        )
        server_cpu = process_cpu_seconds(server.pid) - server_cpu_before
        client_cpu = time.process_time() - client_cpu_before
    finally:
        server.terminate()
        server.wait(timeout=30)

    latencies = [elapsed for status, elapsed in results if status == 200]
    statuses: dict[int, int] = {}
    for status, _ in results:
        statuses[status] = statuses.get(status, 0) + 1
    stored = int(manage(env, COUNT.replace("RECORDER_ID", str(recorder_id))).split("SIGNALS=", 1)[1].strip())
    warmup = options.web_workers * 2
    summary = {
        "alerts": options.alerts,
        "concurrency": options.concurrency,
        "web_workers": options.web_workers,
        "database": env["DATABASE_URL"].split(":", 1)[0],
        "task_broker": "redis" if os.environ.get("REDIS_URL") else "filesystem",
        "statuses": statuses,
        "seconds": round(wall, 3),
        "alerts_per_second": round(len(latencies) / wall, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1) if latencies else None,
        "max_ms": round(max(latencies) * 1000, 1) if latencies else None,
        "server_cpu_ms_per_alert": round(server_cpu / options.alerts * 1000, 2),
        "client_cpu_ms_per_alert": round(client_cpu / options.alerts * 1000, 2),
        "stored_signals": stored - warmup,
        "durable": stored - warmup == statuses.get(200, 0),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
