from django.core.management.base import BaseCommand, CommandError

from pineaccess.management.progress import find_script
from pineaccess.services.session import tradingview_connection_check


class Command(BaseCommand):
    help = "Check that TradingView can be used: sign in (or reuse the session) and list a script's users."

    def add_arguments(self, parser):
        parser.add_argument(
            "--script", help="the script to list (TradingView id or number); default: the first"
        )

    def handle(self, *args, script=None, **options):
        pine_id = find_script(script).pine_id if script else None
        check = tradingview_connection_check(pine_id=pine_id)
        if not check.ok:
            raise CommandError(f"TradingView check failed: {check.error}")
        self.stdout.write(f"Account: {check.account}")
        self.stdout.write(f"Scripts whose access it manages: {len(check.scripts)}")
        for found in check.scripts:
            self.stdout.write(f"  {found}")
        if check.checked_pine_id:
            self.stdout.write(f"Users with access to {check.checked_pine_id}: {check.listed_users}")
        self.stdout.write(self.style.SUCCESS("TradingView check passed: signed in and listed access."))
