from justtrades.celery import app


def test_every_periodic_job_names_a_registered_task():
    app.loader.import_default_modules()
    missing = [entry["task"] for entry in app.conf.beat_schedule.values() if entry["task"] not in app.tasks]
    assert missing == []


def test_tasks_are_acknowledged_late_and_redelivered_when_a_worker_is_lost():
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
