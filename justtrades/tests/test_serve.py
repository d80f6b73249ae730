"""`make run`'s supervisor: a crashed worker or beat starts again; the web server's exit stops everything."""

import sys
import time

from justtrades.management.commands.serve import Supervisor

CRASH = [sys.executable, "-c", "raise SystemExit(3)"]
RUN = [sys.executable, "-c", "import time; time.sleep(30)"]


def wait_for_exit(supervisor: Supervisor, name: str) -> None:
    deadline = time.monotonic() + 10
    while supervisor.children[name].poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)


def test_a_crashed_worker_is_started_again_and_the_web_server_keeps_running():
    supervisor = Supervisor({"web": RUN, "worker": CRASH}, restartable={"worker"})
    reports: list[str] = []
    supervisor.start()
    try:
        first = supervisor.children["worker"]
        wait_for_exit(supervisor, "worker")

        assert supervisor.check(reports.append) is None

        assert supervisor.children["worker"] is not first
        assert reports == ["worker exited with status 3; starting it again."]
        assert supervisor.children["web"].poll() is None
    finally:
        supervisor.stop()


def test_a_worker_that_keeps_crashing_stops_everything_with_the_reason():
    supervisor = Supervisor({"web": RUN, "worker": CRASH}, restartable={"worker"}, per_minute=2)
    supervisor.start()
    try:
        outcomes = []
        for _ in range(3):
            wait_for_exit(supervisor, "worker")
            outcomes.append(supervisor.check(lambda line: None))

        assert outcomes == [None, None, "worker exited with status 3"]
    finally:
        supervisor.stop()
    assert supervisor.children["web"].poll() is not None  # stopped with the rest


def test_the_web_server_exiting_stops_everything():
    supervisor = Supervisor({"web": CRASH, "worker": RUN}, restartable={"worker"})
    supervisor.start()
    try:
        wait_for_exit(supervisor, "web")

        assert supervisor.check(lambda line: None) == "web exited with status 3"
    finally:
        supervisor.stop()
