"""Queueing the pipeline's work: task messages, on commit, and the one runner per recorder an alert wakes.

An accepted alert costs the webhook one Redis `SET NX PX` (the runner key of its recorder) and, only when no
runner holds that key, one task message: the runner drains its recorder's signals in arrival order, executes
their decisions at once, gives the key back, and looks once more before it stops. An alert whose recorder has
a runner sends nothing, because that runner looks after giving the key back, so after the alert committed.
Without Redis the shared cache holds the key (whose `add` may let two runners start: the claims on the rows
make the second find nothing to do). Whatever a lost message leaves, the sweeper hands on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import redis
from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)

# The pipeline's tasks by name: services queue work without importing the tasks module, which imports them.
SIGNAL_PROCESS = "trading.tasks.signal_process"
TRADER_SIGNAL_EXECUTE = "trading.tasks.trader_signal_execute"
ORDER_SETTLE = "trading.tasks.order_settle"

# Long enough for any runner between two renewals (a signal and its orders), short enough that a runner that
# died leaves its recorder to the next alert well inside a recorder's maximum signal age.
RUNNER_LEASE_SECONDS = 20.0
RUNNER_LEASE_MS = int(RUNNER_LEASE_SECONDS * 1000)  # Redis takes the lease in milliseconds
RUNNER_KEY = "justtrades:recorder-runner:{}"
_redis_client = None


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


def recorder_wake(recorder_id: int, signal_id: int) -> None:
    """A signal of this recorder was committed: start a runner for it unless one is running."""
    if runner_claim(recorder_id):
        task_publish(SIGNAL_PROCESS, signal_id)


def _redis() -> redis.Redis:
    global _redis_client
    if _redis_client is None:
        _redis_client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=1.0, socket_connect_timeout=1.0
        )
    return _redis_client


def runner_claim(recorder_id: int) -> bool:
    """Take the recorder's runner key; True also when that cannot be told (a second runner is harmless)."""
    key = RUNNER_KEY.format(recorder_id)
    try:
        if settings.REDIS_URL:
            # Redis directly: one round trip, a lease in milliseconds, and atomic across machines.
            return bool(_redis().set(key, b"1", nx=True, px=RUNNER_LEASE_MS))
        return cache.add(key, 1, RUNNER_LEASE_SECONDS)
    except Exception:
        logger.warning(
            "Could not take the runner key of recorder %s; starting a runner", recorder_id, exc_info=True
        )
        return True


def runner_renew(recorder_id: int) -> None:
    """Keep the key while this runner works, so alerts meanwhile send nothing."""
    key = RUNNER_KEY.format(recorder_id)
    try:
        if settings.REDIS_URL:
            _redis().set(key, b"1", px=RUNNER_LEASE_MS)
        else:
            cache.set(key, 1, RUNNER_LEASE_SECONDS)
    except Exception:
        logger.warning("Could not renew the runner key of recorder %s", recorder_id, exc_info=True)


def runner_release(recorder_id: int) -> None:
    """Give the key back: the next alert of this recorder starts a runner again."""
    key = RUNNER_KEY.format(recorder_id)
    try:
        if settings.REDIS_URL:
            _redis().delete(key)
        else:
            cache.delete(key)
    except Exception:
        # The key lapses by itself; until then alerts rely on this runner's last look and the sweeper.
        logger.warning("Could not release the runner key of recorder %s", recorder_id, exc_info=True)
