"""Publishing Pine Script access tasks: the one seam between the services and Celery."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

logger = logging.getLogger(__name__)


def task_after_commit(task_name: str, *args: Any) -> None:
    """Send a task of pineaccess.tasks after the current transaction commits; a lost message is re-queued
    by the sweeper. Tests replace this function with the `task_queue` fixture."""

    def send() -> None:
        # Imported when sending: pineaccess.tasks calls the services, so the services cannot import it first.
        from pineaccess import tasks

        try:
            getattr(tasks, task_name).delay(*args)
        except Exception:
            # The row is already saved as pending/removing: resume_script_access picks it up later.
            logger.exception("Could not queue %s%s; the periodic sweep will pick it up", task_name, args)

    transaction.on_commit(send)
