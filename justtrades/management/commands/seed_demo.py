"""Create the demo staff user and demo trading set-up for `make run`; safe to run again."""

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from trading.services.demo import demo_trading_seed

DEMO_USERNAME = "demo"


class Command(BaseCommand):
    help = "Create the demo staff user, a paper account, an ES recorder and a trader if missing (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="where the site is served")

    def handle(self, *args, base_url: str, **options):
        user_model = get_user_model()
        password = secrets.token_urlsafe(12)
        with transaction.atomic():
            user, created = user_model.objects.get_or_create(
                username=DEMO_USERNAME,
                defaults={
                    "email": "demo@example.com",
                    "is_staff": True,
                    "is_superuser": True,
                    "approval_status": user_model.ApprovalStatus.APPROVED,
                },
            )
            if created:
                user.set_password(password)
                user.save(update_fields=["password"])
            demo = demo_trading_seed(user)
        if created:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Created the demo staff user. Log in at {base_url}/login as '{DEMO_USERNAME}' "
                    f"with password '{password}' (shown only this once; change it with: "
                    f".venv/bin/python manage.py changepassword {DEMO_USERNAME})."
                )
            )
        else:
            self.stdout.write(
                f"Demo user '{DEMO_USERNAME}' exists; its password was printed when it was created."
            )
        self.stdout.write(
            "Send the demo recorder a buy alert, then watch the position appear at "
            f"{base_url}/positions/ :\n"
            f"  curl -X POST {base_url}{demo['webhook_path']} -H 'Content-Type: application/json' "
            '-d \'{"action": "buy", "ticker": "ES1!", "price": 5000.25}\''
        )
