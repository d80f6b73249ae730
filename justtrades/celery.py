"""The Celery application, configured from Django settings (CELERY_* names)."""

import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "justtrades.settings")

app = Celery("justtrades")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Periodic jobs, declared in code. Every task here is idempotent: a missed or doubled beat does no harm.
app.conf.beat_schedule = {
    # Re-queues signals whose queue message was lost; expires so a backlog of beats never piles up.
    "signals-sweep": {"task": "trading.tasks.signals_sweep", "schedule": 30.0, "options": {"expires": 25}},
    "pineaccess-expire": {"task": "pineaccess.tasks.expire_script_access", "schedule": 300.0},
    "pineaccess-resume": {"task": "pineaccess.tasks.resume_script_access", "schedule": 300.0},
    "pineaccess-sync": {
        "task": "pineaccess.tasks.sync_pine_scripts",
        "schedule": crontab(minute=17, hour="*/6"),
    },
    "pineaccess-recheck-usernames": {
        "task": "pineaccess.tasks.recheck_tradingview_usernames",
        "schedule": 1800.0,
    },
}
