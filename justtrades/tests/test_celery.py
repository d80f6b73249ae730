from justtrades.celery import app


def test_every_periodic_job_names_a_registered_task():
    app.loader.import_default_modules()
    missing = [entry["task"] for entry in app.conf.beat_schedule.values() if entry["task"] not in app.tasks]
    assert missing == []


def test_tasks_are_acknowledged_late_and_redelivered_when_a_worker_is_lost():
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1


def test_every_account_is_reconciled_each_minute():
    [entry] = [
        entry for entry in app.conf.beat_schedule.values() if entry["task"] == "trading.tasks.reconcile_all"
    ]
    assert entry["schedule"] == 60.0


def test_reconciliation_has_its_own_queue_so_a_slow_broker_never_delays_signals():
    app.loader.import_default_modules()
    queue_of = {
        name: app.amqp.router.route({}, name)["queue"].name for name in app.tasks if "trading." in name
    }

    assert queue_of["trading.tasks.reconcile_all"] == "reconcile"
    assert queue_of["trading.tasks.reconcile_account"] == "reconcile"
    assert queue_of["trading.tasks.signal_process"] == "orders"
    assert queue_of["trading.tasks.trader_signal_execute"] == "orders"


def test_every_task_name_the_services_publish_is_a_registered_task():
    from pineaccess.services import publish
    from trading.services import queue

    names = [
        queue.SIGNAL_PROCESS,
        queue.TRADER_SIGNAL_EXECUTE,
        queue.ORDER_SETTLE,
        publish.GRANT_SCRIPT_ACCESS,
        publish.REMOVE_SCRIPT_ACCESS,
        publish.REMOVE_EVERYONE_FROM_SCRIPT,
    ]
    app.loader.import_default_modules()
    assert [name for name in names if name not in app.tasks] == []
