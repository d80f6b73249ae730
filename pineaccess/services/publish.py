"""Publishing Pine Script access tasks: the one seam between the services and Celery."""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app
from django.db import transaction

logger = logging.getLogger(__name__)

# The tasks by name: pineaccess.tasks calls the services, so the services look the tasks up in Celery's
# registry instead of importing them.
GRANT_SCRIPT_ACCESS = "pineaccess.tasks.grant_script_access"
REMOVE_SCRIPT_ACCESS = "pineaccess.tasks.remove_script_access"
REMOVE_EVERYONE_FROM_SCRIPT = "pineaccess.tasks.remove_everyone_from_script"


def task_after_commit(task_name: str, *args: Any) -> None:
    """Send a task after the current transaction commits; a lost message is re-queued by the sweeper."""

    def send() -> None:
        try:
            current_app.tasks[task_name].delay(*args)
        except Exception:
            # The row is already saved as pending/removing: resume_script_access picks it up later.
            logger.exception("Could not queue %s%s; the periodic sweep will pick it up", task_name, args)

    transaction.on_commit(send)
