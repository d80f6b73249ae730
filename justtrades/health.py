"""Liveness of the two things every request and task needs: the database and the task broker."""

import os

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from justtrades.celery import app as celery_app


def database_state() -> str:
    """Return "ok" when the database answers a query, else the error."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as error:
        return f"error: {error.__class__.__name__}: {error}"
    return "ok"


def task_broker_state() -> str:
    """Return "ok" when the Celery broker accepts a connection, else the error."""
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        folder = settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"]
        if os.path.isdir(folder) and os.access(folder, os.W_OK):
            return "ok"
        return f"error: the task queue folder {folder} is missing or not writable"
    try:
        with celery_app.connection_for_write() as broker:
            broker.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2, timeout=2)
            if broker.transport.driver_type == "redis":
                broker.default_channel.client.ping()
    except Exception as error:
        return f"error: {error.__class__.__name__}: {error}"
    return "ok"


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Answer 200 when the database and the task broker both answer, 503 otherwise."""
    checks = {"database": database_state(), "task_broker": task_broker_state()}
    healthy = all(state == "ok" for state in checks.values())
    return JsonResponse({"status": "ok" if healthy else "error", **checks}, status=200 if healthy else 503)
