"""python manage.py killswitch on|off [--user U] [--account A]: stop or resume sending orders."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from trading.models import BrokerAccount, KillSwitch
from trading.selectors import AccountNotFound, broker_account_by_id_or_name
from trading.services.killswitches import killswitch_set


class Command(BaseCommand):
    help = "Turn a kill switch on or off: for everyone, one user (--user) or one broker account (--account)."

    def add_arguments(self, parser):
        parser.add_argument(
            "state", choices=["on", "off", "status"], help="on stops orders, off resumes them"
        )
        target = parser.add_mutually_exclusive_group()
        target.add_argument("--user", help="username whose orders stop or resume")
        target.add_argument("--account", help="broker account id (or its name when that is unique)")
        parser.add_argument("--reason", default="", help="why, shown on the pages and in the signal log")

    def handle(self, *args, state: str, user: str | None, account: str | None, reason: str, **options):
        target_user = self._user(user) if user else None
        target_account = self._account(account) if account else None
        if state == "status":
            self._status()
            return
        switch = killswitch_set(
            engaged=state == "on", user=target_user, account=target_account, reason=reason
        )
        effect = "stopped: signals are stored, no order is sent" if switch.engaged else "resumed"
        self.stdout.write(self.style.SUCCESS(f"{switch}. Orders {self._subject(switch)} are {effect}."))

    def _user(self, username: str):
        found = get_user_model().objects.filter(username=username).first()
        if found is None:
            raise CommandError(f"There is no user named {username!r}.")
        return found

    def _account(self, value: str) -> BrokerAccount:
        try:
            return broker_account_by_id_or_name(value)
        except AccountNotFound as error:
            raise CommandError(str(error)) from None

    def _subject(self, switch: KillSwitch) -> str:
        if switch.scope == KillSwitch.Scope.USER:
            return f"of user {switch.user}"
        if switch.scope == KillSwitch.Scope.ACCOUNT:
            return f"to account {switch.broker_account}"
        return "for everyone"

    def _status(self) -> None:
        engaged = list(KillSwitch.objects.filter(engaged=True).select_related("user", "broker_account"))
        for switch in engaged:
            reason = f" ({switch.reason})" if switch.reason else ""
            self.stdout.write(f"{switch}{reason}")
        self.stdout.write(f"{len(engaged)} kill switch(es) on.")
