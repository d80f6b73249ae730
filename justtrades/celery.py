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
    # Brings each broker account in line with its broker; one task per account, so a slow one waits alone.
    "reconcile": {"task": "trading.tasks.reconcile_all", "schedule": 60.0, "options": {"expires": 55}},
    # Re-queues signals whose queue message was lost; often, so a lost message (or a dead worker's lapsed
    # lease) is picked up well inside a recorder's maximum signal age. Expires so beats never pile up.
    "signals-sweep": {"task": "trading.tasks.signals_sweep", "schedule": 5.0, "options": {"expires": 4}},
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
