"""The benchmark's stack: its processes (the one place to adapt to the task and queue layout), PostgreSQL,
Redis, the fake Tradovate, memory sampling and py-spy.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")
RESULTS = PROJECT / "bench" / "results"

# The README's "Running in production" web flags. Change them here, and only here.
GUNICORN_FLAGS = ["--workers", "4", "--threads", "4"]
ORDER_PATHS = ("/order/placeoso", "/order/placeorder", "/order/placeoco", "/order/liquidateposition")

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
