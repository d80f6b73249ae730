import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

PROJECT = Path(__file__).resolve().parents[2]

PRINT_SETTINGS = """
import json, django
django.setup()
from django.conf import settings as s
db = s.DATABASES["default"]
print(json.dumps({
    "DEBUG": s.DEBUG, "ALLOWED_HOSTS": s.ALLOWED_HOSTS, "ENGINE": db["ENGINE"], "NAME": str(db["NAME"]),
    "OPTIONS": dict(db.get("OPTIONS", {})), "CONN_HEALTH_CHECKS": db.get("CONN_HEALTH_CHECKS"),
    "BROKER": s.CELERY_BROKER_URL, "CACHE": s.CACHES["default"]["BACKEND"],
    "KEYS": len(s.FIELD_ENCRYPTION_KEYS),
    "REGISTRATION_OPEN": s.REGISTRATION_OPEN, "WEBHOOK_DEDUP_SECONDS": s.WEBHOOK_DEDUP_SECONDS,
    "WEBHOOK_ALLOWED_IPS": s.WEBHOOK_ALLOWED_IPS,
    "NETWORKS": [str(n) for n in s.WEBHOOK_ALLOWED_NETWORKS], "SESSION_COOKIE_AGE": s.SESSION_COOKIE_AGE,
    "TRADINGVIEW_URL": s.TRADINGVIEW_URL, "DEFAULT_PINE_IDS": s.DEFAULT_PINE_IDS,
    "ACKS_LATE": s.CELERY_TASK_ACKS_LATE,
    "PREFETCH": s.CELERY_WORKER_PREFETCH_MULTIPLIER, "REJECT_ON_LOST": s.CELERY_TASK_REJECT_ON_WORKER_LOST,
}, default=str))
"""


def run_with_env(environment: dict[str, str], code: str = PRINT_SETTINGS) -> subprocess.CompletedProcess:
    """Run Python in a clean environment, as a fresh deployment would start."""
    base = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "justtrades.settings",
        "HOME": "/nonexistent",
        "ENV_FILE": "/nonexistent/.env",  # a developer's .env from `make run` must not fill the gaps
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT,
        env={**base, **environment},
        capture_output=True,
        text=True,
        timeout=60,
    )


def settings_from(environment: dict[str, str]) -> dict:
    result = run_with_env(environment)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_sample_production_environment_is_parsed_into_settings():
    values = settings_from(
        {
            "SECRET_KEY": "x" * 60,
            "FIELD_ENCRYPTION_KEYS": f"{Fernet.generate_key().decode()},{Fernet.generate_key().decode()}",
            "ALLOWED_HOSTS": "trades.example.com,www.trades.example.com",
            "DATABASE_URL": "postgres://jt:secret@db.internal:5432/justtrades",
            "REDIS_URL": "redis://cache.internal:6379/0",
            "REGISTRATION_OPEN": "true",
            "WEBHOOK_DEDUP_SECONDS": "5",
            "WEBHOOK_ALLOWED_IPS": "tradingview,10.0.0.0/8",
            "SESSION_TIMEOUT": "900",
            "TRADINGVIEW_URL": "https://fr.tradingview.com/",
            "DEFAULT_PINE_IDS": "PUB;3be120ba74944ca7b32ad644f40aaff2",
        }
    )
    assert values["DEBUG"] is False
    assert values["ALLOWED_HOSTS"] == ["trades.example.com", "www.trades.example.com"]
    assert values["ENGINE"] == "django.db.backends.postgresql"
    assert values["NAME"] == "justtrades"
    assert "pool" in values["OPTIONS"]
    assert values["CONN_HEALTH_CHECKS"] is False  # the pool replaces a check per request
    assert values["BROKER"] == "redis://cache.internal:6379/0"
    assert values["CACHE"] == "django.core.cache.backends.redis.RedisCache"
    assert values["KEYS"] == 2
    assert values["REGISTRATION_OPEN"] is True
    assert values["WEBHOOK_DEDUP_SECONDS"] == 5.0
    assert values["WEBHOOK_ALLOWED_IPS"] == ["tradingview", "10.0.0.0/8"]
    assert len(values["NETWORKS"]) == 5
    assert "52.89.214.238/32" in values["NETWORKS"]
    assert values["SESSION_COOKIE_AGE"] == 900
    assert values["TRADINGVIEW_URL"] == "https://fr.tradingview.com"
    assert values["DEFAULT_PINE_IDS"] == ["PUB;3be120ba74944ca7b32ad644f40aaff2"]
    assert (values["ACKS_LATE"], values["PREFETCH"], values["REJECT_ON_LOST"]) == (True, 1, True)


def test_the_embedded_defaults_need_no_server():
    values = settings_from({"DEBUG": "true"})
    assert values["ENGINE"] == "django.db.backends.sqlite3"
    assert values["NAME"].endswith("db.sqlite3")
    assert values["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in values["OPTIONS"]["init_command"]
    assert values["OPTIONS"]["timeout"] >= 5
    assert values["BROKER"].startswith("filesystem://")
    assert values["CACHE"] == "django.core.cache.backends.filebased.FileBasedCache"
    assert values["REGISTRATION_OPEN"] is False
    assert values["ALLOWED_HOSTS"] == ["localhost", "127.0.0.1"]


@pytest.mark.parametrize("missing", ["SECRET_KEY", "FIELD_ENCRYPTION_KEYS"])
def test_start_up_stops_with_a_clear_message_when_a_secret_is_missing_and_debug_is_off(missing):
    environment = {"SECRET_KEY": "x" * 60, "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode()}
    del environment[missing]
    result = run_with_env(environment)
    assert result.returncode != 0
    assert f"{missing} is not set" in result.stderr
    assert "DEBUG is off" in result.stderr


def test_debug_is_off_unless_asked():
    values = settings_from({"SECRET_KEY": "x" * 60, "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode()})
    assert values["DEBUG"] is False


def test_a_malformed_address_in_the_webhook_allow_list_stops_start_up_with_its_name():
    result = run_with_env({"DEBUG": "true", "WEBHOOK_ALLOWED_IPS": "tradingview,10.0.0.300"})
    assert result.returncode != 0
    assert "WEBHOOK_ALLOWED_IPS" in result.stderr
    assert "10.0.0.300" in result.stderr


def test_manage_py_reports_a_missing_secret_in_one_line_without_a_traceback():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=PROJECT,
        env={"PATH": os.environ["PATH"], "HOME": "/nonexistent", "ENV_FILE": "/nonexistent/.env"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("manage.py: SECRET_KEY is not set.")
    assert "Traceback" not in result.stderr
