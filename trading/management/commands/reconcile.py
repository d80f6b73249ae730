"""python manage.py reconcile [--account A] [--dry-run]: bring accounts in line with their brokers now."""

from django.core.management.base import BaseCommand, CommandError

from trading.models import BrokerAccount, ReconcileRun
from trading.selectors import AccountNotFound, broker_account_by_id_or_name
from trading.services.reconciliation.record import ReconcileReport
from trading.services.reconciliation.run import account_reconcile, accounts_to_reconcile


class Command(BaseCommand):
    help = "Reconcile broker accounts with their brokers now: every account in use, or one (--account)."

    def add_arguments(self, parser):
        parser.add_argument("--account", help="broker account id (or its name when that is unique)")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="report what would be done; change nothing at the broker or in the database",
        )

    def handle(self, *args, account: str | None, dry_run: bool, **options):
        account_ids = [self._account(account).pk] if account else accounts_to_reconcile()
        if dry_run:
            self.stdout.write("Dry run: nothing is changed at the broker or in the database.")
        failed = actions = 0
        for number, account_id in enumerate(account_ids, start=1):
            report = account_reconcile(
                account_id=account_id, dry_run=dry_run, trigger=ReconcileRun.Trigger.COMMAND
            )
            actions += len(report.steps)
            failed += not report.ok
            self._show(report, number, len(account_ids), dry_run)
        verb = "would take" if dry_run else "took"
        summary = f"Reconciled {len(account_ids)} account(s): {verb} {actions} action(s); {failed} failed."
        if failed:
            raise CommandError(summary)
        self.stdout.write(self.style.SUCCESS(summary))

    def _show(self, report: ReconcileReport, number: int, total: int, dry_run: bool) -> None:
        state = "failed" if not report.ok else f"{len(report.steps)} action(s)"
        self.stdout.write(f"[{number}/{total}] {report.account_name or report.account_pk}: {state}")
        for step in report.steps:
            where = " ".join(part for part in (step.account_id, step.symbol) if part)
            prefix = "would " if dry_run else ""
            self.stdout.write(f"  - {prefix}{step.kind}{f' ({where})' if where else ''}: {step.reason}")
        for note in report.notes:
            self.stdout.write(f"  · {note}")
        if report.error:
            self.stderr.write(f"  ! {report.error}")

    def _account(self, value: str) -> BrokerAccount:
        try:
            return broker_account_by_id_or_name(value)
        except AccountNotFound as error:
            raise CommandError(str(error)) from None
