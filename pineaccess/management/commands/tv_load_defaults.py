from django.core.management.base import BaseCommand

from pineaccess.services.scripts import pine_script_load_defaults, pine_script_refresh_names
from pineaccess.tradingview import TradingViewError


class Command(BaseCommand):
    help = "Put the scripts of DEFAULT_PINE_IDS in the catalogue and fetch their names from TradingView."

    def add_arguments(self, parser):
        parser.add_argument("--no-names", action="store_true", help="do not ask TradingView for the names")

    def handle(self, *args, no_names=False, **options):
        scripts = pine_script_load_defaults()
        named = 0
        if scripts and not no_names:
            try:
                named = pine_script_refresh_names()
            except TradingViewError as error:
                self.stdout.write(
                    self.style.WARNING(
                        f"Names not fetched: {error.summary}. They are fetched at the next sync."
                    )
                )
        for script in scripts:
            self.stdout.write(f"  {script.pine_id}")
        self.stdout.write(
            self.style.SUCCESS(f"{len(scripts)} default scripts in the catalogue; {named} names fetched.")
        )
