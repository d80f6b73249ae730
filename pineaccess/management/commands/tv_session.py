import getpass

from django.core.management.base import BaseCommand, CommandError

from pineaccess.services.session import tradingview_session_paste
from pineaccess.tradingview import TradingViewError


class Command(BaseCommand):
    help = "Save TradingView session cookies pasted from a logged-in browser, after TradingView accepts them."

    def add_arguments(self, parser):
        parser.add_argument("--sessionid", help="the sessionid cookie; asked for (hidden) when left out")
        parser.add_argument(
            "--sessionid-sign", dest="sessionid_sign", default="", help="the sessionid_sign cookie"
        )

    def handle(self, *args, sessionid=None, sessionid_sign="", **options):
        if not sessionid:
            # Asking keeps the cookie out of the shell history and the process list.
            sessionid = getpass.getpass("sessionid: ").strip()
            sessionid_sign = sessionid_sign or getpass.getpass("sessionid_sign (Enter for none): ").strip()
        if not sessionid:
            raise CommandError("A sessionid is required.")
        try:
            retried = tradingview_session_paste(sessionid=sessionid, sessionid_sign=sessionid_sign or None)
        except (ValueError, TradingViewError) as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            self.style.SUCCESS(
                "TradingView accepted the session; saved encrypted in the database."
                + (f" Queued {retried} failed grants again." if retried else "")
            )
        )
