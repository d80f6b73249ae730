from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from pineaccess.management.progress import ProgressBar, find_script, find_user
from pineaccess.models import ScriptAccess
from pineaccess.services.access import AccessBusy, script_access_apply, script_access_grant


class Command(BaseCommand):
    help = "Grant (or extend) a user's access to scripts on TradingView now, for some days or for life."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="username or email")
        parser.add_argument(
            "--script", required=True, action="append", help="TradingView id or number; repeatable"
        )
        parser.add_argument(
            "--days", type=int, help="days of access (added to current access); omit for lifetime"
        )

    def handle(self, *args, user, script, days=None, **options):
        person = find_user(user)
        scripts = [find_script(text) for text in script]
        try:
            rows = script_access_grant(user=person, scripts=scripts, duration_days=days, queue=False)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        bar = ProgressBar(self.stdout, label="grants")
        failures = []
        for done, row in enumerate(rows, start=1):
            try:
                result = script_access_apply(access_id=row.pk)
            except AccessBusy:
                failures.append(f"{row.script.name}: a worker is granting it right now")
            else:
                if result.status != ScriptAccess.Status.ACTIVE:
                    row.refresh_from_db()
                    failures.append(f"{row.script.name}: {row.last_error or result.detail}")
            bar(done, len(rows))
        for line in failures:
            self.stdout.write(f"  failed: {line}")
        until = f"{days} days" if days else "lifetime"
        summary = f"Granted {len(rows) - len(failures)} of {len(rows)} scripts to {person} ({until})."
        if failures:
            raise CommandError(summary)
        self.stdout.write(self.style.SUCCESS(summary))
