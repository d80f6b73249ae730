"""Fan-out: a signal's decisions executed side by side, one thread each, in every worker process."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import close_old_connections

from trading.claims import WAIT_FOR_EARLIER_SECONDS
from trading.errors import RetryLater, WaitForEarlier
from trading.services import queue
from trading.services.execution import RETRY_BACKOFF, trader_signal_execute

logger = logging.getLogger(__name__)


def decisions_execute(*, decision_ids: Sequence[int]) -> None:
    """Execute a signal's decisions now, in parallel threads, and return when every one has ended its run.

    One slow or failing account holds back none of the others; what cannot finish now (the broker is down, an
    earlier decision of the trader is still in another worker's hands) is handed to `trader_signal_execute`
    tasks, which retry with backoff. One decision's failure stays its own: only the task's time limit raises.
    """
    if not decision_ids:
        return
    threads = min(settings.EXECUTION_THREADS, len(decision_ids))
    if threads <= 1:
        for decision_id in decision_ids:
            _decision_run(decision_id)
        return
    # Each thread has its own database connection; the pool outlives this call, so they are reused.
    list(_fanout_pool().map(_decision_run_in_thread, decision_ids))


_pool: ThreadPoolExecutor | None = None
_pool_pid: int | None = None
_pool_lock = threading.Lock()


def _fanout_pool() -> ThreadPoolExecutor:
    """This process's fan-out threads, made again after a fork (threads do not survive one)."""
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(max_workers=settings.EXECUTION_THREADS, thread_name_prefix="fanout")
            _pool_pid = os.getpid()
        return _pool


def _decision_run_in_thread(decision_id: int) -> None:
    # As Django does around a request: a connection broken by a database restart is replaced, and a pooled
    # one goes back to the pool between jobs.
    close_old_connections()
    try:
        _decision_run(decision_id)
    finally:
        close_old_connections()


def _decision_run(decision_id: int) -> None:
    """Run one decision; what must wait or retry becomes a task message, anything else is logged."""
    try:
        trader_signal_execute(decision_id=decision_id)
    except WaitForEarlier:
        queue.task_publish(queue.TRADER_SIGNAL_EXECUTE, decision_id, countdown=WAIT_FOR_EARLIER_SECONDS)
    except RetryLater as retry:
        countdown = retry.countdown or RETRY_BACKOFF[0]
        queue.task_publish(queue.TRADER_SIGNAL_EXECUTE, decision_id, countdown=countdown)
    except SoftTimeLimitExceeded:
        raise  # the runner's task is out of time: it stops here, the sweeper hands the rest on
    except Exception:
        # Its lease lapses and the sweeper hands it on; the other decisions of the signal go on.
        logger.exception("Decision %s could not be executed now; the sweeper hands it on", decision_id)
