from django.core.management.base import BaseCommand, CommandError

from pineaccess.management.progress import ProgressBar, find_script, find_user
from pineaccess.models import ScriptAccess
from pineaccess.services.access import AccessBusy, script_access_apply, script_access_revoke_for_user


class Command(BaseCommand):
    help = "Remove a user's access to one script (or all of them) on TradingView, then in the database."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="username or email")
        parser.add_argument(
            "--script", action="append", help="TradingView id or number; repeatable; default all"
        )

    def handle(self, *args, user, script=None, **options):
        person = find_user(user)
        scripts = [find_script(text) for text in script] if script else None
        script_access_revoke_for_user(user=person, scripts=scripts, queue=False)
        rows = ScriptAccess.objects.filter(user=person, status=ScriptAccess.Status.REMOVING).select_related(
            "script"
        )
        if scripts is not None:
            rows = rows.filter(script__in=scripts)
        rows = list(rows)
        if not rows:
            self.stdout.write(f"{person} has no access to remove.")
            return
        bar = ProgressBar(self.stdout, label="removals")
        failures = []
        for done, row in enumerate(rows, start=1):
            try:
                result = script_access_apply(access_id=row.pk)
            except AccessBusy:
                failures.append(f"{row.script.name}: a worker is removing it right now")
            else:
                if result.status != ScriptAccess.Status.REMOVED:
                    failures.append(f"{row.script.name}: {result.detail}")
            bar(done, len(rows))
        for line in failures:
            self.stdout.write(f"  not removed: {line}")
        summary = f"Removed {len(rows) - len(failures)} of {len(rows)} access rows of {person}."
        if failures:
            raise CommandError(summary + " The rest stay 'removing' and are retried later.")
        self.stdout.write(self.style.SUCCESS(summary))
