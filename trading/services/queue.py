"""Queueing the pipeline's work: task messages, on commit, and the window that wakes the dispatcher."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import redis
from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)


# The pipeline's tasks by name: services queue work without importing the tasks module, which imports them.
SIGNAL_PROCESS = "trading.tasks.signal_process"
SIGNALS_DISPATCH = "trading.tasks.signals_dispatch"
TRADER_SIGNAL_EXECUTE = "trading.tasks.trader_signal_execute"
ORDER_SETTLE = "trading.tasks.order_settle"


def task_publish(
    task_name: str, object_id: int | None, *, countdown: float | None = None, expires: float | None = None
) -> None:
    """Send a task message; an outage is logged, not raised: the row is durable and the sweeper re-queues."""
    try:
        args = [] if object_id is None else [object_id]
        current_app.send_task(task_name, args=args, countdown=countdown, expires=expires)
    except Exception:
        logger.warning(
            "Could not queue %s for %s; the sweeper will re-queue it", task_name, object_id, exc_info=True
        )


def task_publish_on_commit(task_name: str, object_ids: Iterable[int]) -> None:
    """Send one message per id once the current transaction commits."""
    ids = list(object_ids)
    if ids:
        transaction.on_commit(lambda: [task_publish(task_name, object_id) for object_id in ids])


# A webhook does not send a task message per alert: that cost more than storing the alert. The first alert of
# a short window sends one dispatch at once and one for the window's end; an alert whose window is already
# open (in this process, or in another one through the shared key) sends nothing, because the trailing
# dispatch runs after the window closed, so after that alert was committed. A burst costs two messages per
# window, a lone alert is dispatched at once, and the sweeper still catches whatever a lost message left.

DISPATCH_WINDOW_SECONDS = 0.1
# Covers the clocks of the web process, Redis and the worker drifting apart.
DISPATCH_MARGIN_SECONDS = 0.05
DISPATCH_WINDOW_KEY = "justtrades:signals-dispatch-window"
DISPATCH_EXPIRES_SECONDS = 30.0
_window_ends = 0.0  # monotonic end of the window this process opened
_redis_client = None


def dispatch_window_forget() -> None:
    """Forget the window this process opened, so the next alert dispatches at once (tests start so)."""
    global _window_ends
    _window_ends = 0.0


def signals_nudge() -> None:
    """Have the pending signals dispatched: at once for the first of a window, and again after it."""
    global _window_ends
    now = time.monotonic()
    if now < _window_ends or not dispatch_window_open():
        return  # a dispatch after the window's end is already on its way
    _window_ends = now + DISPATCH_WINDOW_SECONDS
    task_publish(SIGNALS_DISPATCH, None, expires=DISPATCH_EXPIRES_SECONDS)
    task_publish(
        SIGNALS_DISPATCH,
        None,
        countdown=DISPATCH_WINDOW_SECONDS + DISPATCH_MARGIN_SECONDS,
        expires=DISPATCH_EXPIRES_SECONDS,
    )


def dispatch_window_open() -> bool:
    """Open the shared window unless another process holds one; True also when that cannot be told."""
    global _redis_client
    try:
        if settings.REDIS_URL:
            # Redis directly: Django's cache rounds timeouts to whole seconds, and the window is a tenth.
            if _redis_client is None:
                _redis_client = redis.Redis.from_url(settings.REDIS_URL)
            milliseconds = int(DISPATCH_WINDOW_SECONDS * 1000)
            return bool(_redis_client.set(DISPATCH_WINDOW_KEY, b"1", nx=True, px=milliseconds))
        return cache.add(DISPATCH_WINDOW_KEY, 1, DISPATCH_WINDOW_SECONDS)
    except Exception:
        logger.warning("Could not check the dispatch window; dispatching anyway", exc_info=True)
        return True
