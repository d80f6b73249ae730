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
        children: dict[str, subprocess.Popen] = {}
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        for name, command in commands.items():
            # Each child in its own process group so one Ctrl-C is handled here once, in order.
            children[name] = subprocess.Popen(command, start_new_session=True)  # noqa: S603
        self.stdout.write(
            self.style.SUCCESS(f"JustTrades is running at http://{bind}/ (Ctrl-C stops everything).")
        )
        failed = None
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    failed = f"{name} exited with status {child.returncode}"
                    stopping = True
                    break
            time.sleep(0.5)
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        if failed:
            raise CommandError(f"Stopped everything because {failed}.")
        self.stdout.write("Stopped the web server, the workers and beat.")
