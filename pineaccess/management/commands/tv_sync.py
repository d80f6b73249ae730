from django.core.management.base import BaseCommand, CommandError

from pineaccess.management.progress import ProgressBar, find_script
from pineaccess.models import SyncReport
from pineaccess.services.sync import pine_scripts_sync


class Command(BaseCommand):
    help = (
        "Compare who has access on TradingView with the database for each active script; --fix repairs drift."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--script", action="append", help="only this script (TradingView id or number); repeatable"
        )
        parser.add_argument("--fix", action="store_true", help="make TradingView match the database")

    def handle(self, *args, script=None, fix=False, **options):
        scripts = [find_script(text) for text in script] if script else None
        run = pine_scripts_sync(scripts=scripts, fix=fix, progress=ProgressBar(self.stdout, label="scripts"))
        for report in run.reports:
            self._print(report)
        drift = sum(report.drift_count for report in run.reports)
        failed = sum(report.outcome == SyncReport.Outcome.FAILED for report in run.reports)
        fixed = sum(len(report.fixes) for report in run.reports)
        summary = f"Synced {len(run.reports)} scripts: {drift} differences, {failed} failed"
        summary += f", {fixed} fixed." if fix else "." + (" Run again with --fix to repair." if drift else "")
        if not run.ok:
            raise CommandError(summary)
        self.stdout.write(self.style.SUCCESS(summary) if not drift or fix else self.style.WARNING(summary))

    def _print(self, report: SyncReport) -> None:
        self.stdout.write(f"{report.script.name} ({report.pine_id}): {report.get_outcome_display()}")
        if report.error:
            self.stdout.write(f"  error: {report.error}")
        for item in report.only_on_tradingview:
            self.stdout.write(
                f"  on TradingView only: {item['username']} ({item['expiration'] or 'lifetime'})"
            )
        for item in report.only_here:
            self.stdout.write(f"  here only: {item['username']} ({item['expires_at'] or 'lifetime'})")
        for item in report.different_expiry:
            self.stdout.write(
                f"  different expiry: {item['username']} here {item['here'] or 'lifetime'}, "
                f"TradingView {item['there'] or 'lifetime'}"
            )
        for line in report.fixes:
            self.stdout.write(f"  fixed: {line}")
        for line in report.fix_errors:
            self.stdout.write(f"  not fixed: {line}")
