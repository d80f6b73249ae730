"""Create the demo staff user and demo data for `make run`; safe to run again."""

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

DEMO_USERNAME = "demo"


class Command(BaseCommand):
    help = "Create the demo staff user and demo data if they are missing (idempotent)."

    @transaction.atomic
    def handle(self, *args, **options):
        user_model = get_user_model()
        if user_model.objects.filter(username=DEMO_USERNAME).exists():
            self.stdout.write(
                f"Demo user '{DEMO_USERNAME}' already exists; its password was printed when created."
            )
            return
        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser(DEMO_USERNAME, "demo@example.com", password)
        self.stdout.write(
            self.style.SUCCESS(
                f"Created the demo staff user. Log in at http://127.0.0.1:8000/login as "
                f"'{DEMO_USERNAME}' with password '{password}' (shown only this once; "
                f"change it with: .venv/bin/python manage.py changepassword {DEMO_USERNAME})."
            )
        )
