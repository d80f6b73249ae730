"""The Celery application, configured from Django settings (CELERY_* names)."""

import os

from celery import Celery
from celery.schedules import crontab  # noqa: F401  (kept for schedule entries written as crontabs)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "justtrades.settings")

app = Celery("justtrades")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Periodic jobs, declared in code. Every task here is idempotent: a missed or doubled beat does no harm.
app.conf.beat_schedule = {}
