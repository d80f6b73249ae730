from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from pineaccess import selectors
from pineaccess.management.progress import ProgressBar
from pineaccess.models import ScriptAccess
from pineaccess.services.access import AccessBusy, script_access_apply, script_access_expire_due


class Command(BaseCommand):
    help = "Remove access whose time has passed: on TradingView first, then in the database."

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="list what would be removed, change nothing"
        )

    def handle(self, *args, dry_run=False, **options):
        if dry_run:
            due = list(selectors.script_accesses_due())
            for row in due:
                self.stdout.write(
                    f"would remove {row.tradingview_username} from {row.script.name} "
                    f"(expired {row.expires_at:%Y-%m-%d %H:%M %Z})"
                )
            self.stdout.write(f"Dry run: {len(due)} expired access rows would be removed.")
            return
        now = timezone.now()
        script_access_expire_due(now=now, queue=False)
        # Also finishes expired removals that an earlier run or a lost task left behind.
        ids = list(
            ScriptAccess.objects.filter(status=ScriptAccess.Status.REMOVING, expires_at__lte=now)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        bar = ProgressBar(self.stdout, label="expired access")
        removed, failures = 0, []
        for done, pk in enumerate(ids, start=1):
            try:
                result = script_access_apply(access_id=pk)
            except AccessBusy:
                result = None
            if result is not None and result.status == ScriptAccess.Status.REMOVED:
                removed += 1
            else:
                failures.append(f"access {pk}: {result.detail if result else 'being worked on by a worker'}")
            bar(done, len(ids))
        for line in failures:
            self.stdout.write(f"  not removed: {line}")
        summary = f"Removed {removed} expired access rows; {len(failures)} not removed."
        if failures:
            raise CommandError(summary + " They stay 'removing' and are retried later.")
        self.stdout.write(self.style.SUCCESS(summary))
