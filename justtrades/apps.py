from pathlib import Path

from django.apps import AppConfig
from django.conf import settings


class JustTradesConfig(AppConfig):
    name = "justtrades"
    verbose_name = "JustTrades"

    def ready(self) -> None:
        """Create the folders the embedded task broker and static files live in."""
        Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)
        if settings.CELERY_BROKER_URL.startswith("filesystem://"):
            options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
            for name in ("data_folder_in", "data_folder_out", "control_folder"):
                Path(options[name]).mkdir(parents=True, exist_ok=True)
