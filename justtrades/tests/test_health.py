import pytest
from django.db.utils import OperationalError

from justtrades import health


@pytest.mark.django_db
def test_healthz_answers_200_when_database_and_task_broker_answer(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "task_broker": "ok"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_healthz_answers_503_and_says_why_when_the_database_is_down(client, monkeypatch):
    class BrokenCursor:
        def __enter__(self):
            raise OperationalError("connection refused")

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(health.connection, "cursor", lambda: BrokenCursor())
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert "connection refused" in body["database"]


@pytest.mark.django_db
def test_healthz_answers_503_when_the_task_broker_is_unreachable(client, settings, tmp_path):
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(tmp_path / "missing")}
    settings.CELERY_BROKER_URL = "filesystem://"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["task_broker"].startswith("error")
    assert response.json()["database"] == "ok"


def test_a_redis_broker_that_does_not_answer_is_reported(settings):
    from justtrades.celery import app

    original = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    try:
        assert health.task_broker_state().startswith("error")
    finally:
        app.conf.broker_url = original


def test_healthz_refuses_other_methods(client):
    assert client.post("/healthz").status_code == 405
