"""Publishing Pine Script access tasks: the one seam between the services and Celery."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, current_app
from django.db import transaction

logger = logging.getLogger(__name__)

# The tasks by name: pineaccess.tasks calls the services, so the services look the tasks up in Celery's
# registry instead of importing them.
GRANT_SCRIPT_ACCESS = "pineaccess.tasks.grant_script_access"
REMOVE_SCRIPT_ACCESS = "pineaccess.tasks.remove_script_access"
REMOVE_EVERYONE_FROM_SCRIPT = "pineaccess.tasks.remove_everyone_from_script"


def registered_task(task_name: str) -> Task:
    """The task of this name, loading the task modules first in a process that has not (a web process)."""
    task = current_app.tasks.get(task_name)
    if task is None:
        current_app.loader.import_default_modules()  # Celery's autodiscovery of every app's tasks module
        task = current_app.tasks[task_name]
    return task


def task_after_commit(task_name: str, *args: Any) -> None:
    """Send a task after the current transaction commits; a lost message is re-queued by the sweeper."""

    def send() -> None:
        try:
            registered_task(task_name).delay(*args)
        except Exception:
            # The row is already saved as pending/removing: resume_script_access picks it up later.
            logger.exception("Could not queue %s%s; the periodic sweep will pick it up", task_name, args)

    transaction.on_commit(send)
