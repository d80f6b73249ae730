"""WSGI entry point (gunicorn justtrades.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "justtrades.settings")

application = get_wsgi_application()
