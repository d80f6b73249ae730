import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

PROJECT = Path(__file__).resolve().parents[2]

# The production settings that README.md documents.
PRODUCTION_ENVIRONMENT = {
    "DEBUG": "false",
    "HTTPS": "true",
    "ALLOWED_HOSTS": "trades.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://trades.example.com",
}


@pytest.mark.django_db
def test_models_and_migrations_agree():
    out = io.StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


def test_check_deploy_is_clean_under_the_documented_production_settings():
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": "/nonexistent",
        "ENV_FILE": "/nonexistent/.env",
        "SECRET_KEY": "k7" + "Zq9-Lp2_Wm4xRt8vNb6cYh3JsDf5GaKe1Uo0Ii7PlMnBvCxZaSdQwErTyUiOp",
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        **PRODUCTION_ENVIRONMENT,
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=PROJECT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_collectstatic_builds_the_manifest_that_production_serves(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    call_command("collectstatic", "--noinput", verbosity=0)
    assert (tmp_path / "staticfiles.json").exists()
    assert list(tmp_path.glob("vendor/bootstrap/bootstrap.min.*.css"))
