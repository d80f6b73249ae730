"""Run the whole product in the foreground: web server, Celery workers and Celery beat."""

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Start gunicorn, the Celery workers (orders, reconciliation) and Celery beat; Ctrl-C stops them all."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--bind", default=os.environ.get("BIND", "127.0.0.1:8000"), help="host:port to serve"
        )
        parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
        parser.add_argument("--task-workers", type=int, default=2, help="Celery worker concurrency")

    def handle(self, *args, bind: str, web_workers: int, task_workers: int, **options):
        bin_dir = os.path.dirname(sys.executable)
        schedule = settings.CELERY_BEAT_SCHEDULE_FILENAME
        commands = {
            "web": [
                os.path.join(bin_dir, "gunicorn"), "justtrades.wsgi", "--bind", bind,
                "--workers", str(web_workers), "--threads", "4", "--graceful-timeout", "10",
            ],
            "worker": [
                sys.executable, "-m", "celery", "-A", "justtrades", "worker", "--queues", "default,orders",
                "--concurrency", str(task_workers), "--loglevel", settings.LOG_LEVEL, "--without-mingle",
                "--without-gossip",
            ],
            "reconciler": [
                sys.executable, "-m", "celery", "-A", "justtrades", "worker", "--queues", "reconcile",
                "--concurrency", "1", "--hostname", "reconcile@%h", "--loglevel", settings.LOG_LEVEL,
                "--without-mingle", "--without-gossip",
            ],
            "beat": [
                sys.executable, "-m", "celery", "-A", "justtrades", "beat", "--schedule", schedule,
                "--loglevel", settings.LOG_LEVEL,
            ],
        }  # fmt: skip
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        supervisor = Supervisor(commands, restartable={"worker", "reconciler", "beat"})
        supervisor.start()
        self.stdout.write(
            self.style.SUCCESS(f"JustTrades is running at http://{bind}/ (Ctrl-C stops everything).")
        )
        failed = None
        while not stopping and failed is None:
            failed = supervisor.check(self.stderr.write)
            time.sleep(0.5)
        supervisor.stop()
        if failed:
            raise CommandError(f"Stopped everything because {failed}.")
        self.stdout.write("Stopped the web server, the workers and beat.")


class Supervisor:
    """Runs the product's processes; starts a crashed worker or beat again, within a limit per minute.

    A Celery worker can die on its own (a broker restart at the wrong moment): its unfinished work is safe in
    the database and the queue, so it is started again rather than taking the web server down with it.
    """

    def __init__(self, commands: dict[str, list[str]], *, restartable: set[str], per_minute: int = 5) -> None:
        self.commands = commands
        self.restartable = restartable
        self.per_minute = per_minute
        self.children: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, list[float]] = {name: [] for name in commands}

    def start(self) -> None:
        """Start every process, each in its own process group so one Ctrl-C is handled here, in order."""
        for name, command in self.commands.items():
            self.children[name] = subprocess.Popen(command, start_new_session=True)  # noqa: S603

    def check(self, report) -> str | None:
        """Start again what crashed and may be; return why everything must stop, if it must."""
        now = time.monotonic()
        for name, child in list(self.children.items()):
            if child.poll() is None:
                continue
            recent = [moment for moment in self.restarts[name] if now - moment < 60]
            if name not in self.restartable or len(recent) >= self.per_minute:
                return f"{name} exited with status {child.returncode}"
            report(f"{name} exited with status {child.returncode}; starting it again.")
            self.restarts[name] = [*recent, now]
            self.children[name] = subprocess.Popen(self.commands[name], start_new_session=True)  # noqa: S603
        return None

    def stop(self) -> None:
        """Ask every process to stop, and kill what has not within 15 seconds."""
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in self.children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
