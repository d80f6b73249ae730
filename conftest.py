"""Test-wide fixtures shared by every app."""

import pytest


@pytest.fixture(autouse=True)
def _plain_static_storage(settings):
    """Render templates without a collectstatic manifest, as tests never run collectstatic."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
