"""Kill switches: a stop on sending orders for everyone, one user or one broker account."""

from django.conf import settings
from django.db import models

from trading.models.accounts import BrokerAccount


class KillSwitchScope(models.TextChoices):
    GLOBAL = "global", "Everyone"
    USER = "user", "One user"
    ACCOUNT = "account", "One broker account"


class KillSwitch(models.Model):
    """A stop on sending orders: for everyone, one user or one broker account. Signals are still stored."""

    Scope = KillSwitchScope

    scope = models.CharField(max_length=8, choices=KillSwitchScope.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="kill_switches",
    )
    broker_account = models.ForeignKey(
        BrokerAccount, on_delete=models.CASCADE, null=True, blank=True, related_name="kill_switches"
    )
    engaged = models.BooleanField("on", default=False)
    reason = models.CharField(max_length=200, blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["scope", "pk"]
        verbose_name = "kill switch"
        verbose_name_plural = "kill switches"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(scope="global", user__isnull=True, broker_account__isnull=True)
                | models.Q(scope="user", user__isnull=False, broker_account__isnull=True)
                | models.Q(scope="account", user__isnull=True, broker_account__isnull=False),
                name="trading_killswitch_scope_matches_target",
            ),
            models.UniqueConstraint(
                fields=["scope"], condition=models.Q(scope="global"), name="trading_killswitch_one_global"
            ),
            models.UniqueConstraint(
                fields=["user"], condition=models.Q(scope="user"), name="trading_killswitch_one_per_user"
            ),
            models.UniqueConstraint(
                fields=["broker_account"],
                condition=models.Q(scope="account"),
                name="trading_killswitch_one_per_account",
            ),
        ]

    def __str__(self) -> str:
        state = "on" if self.engaged else "off"
        if self.scope == KillSwitchScope.USER:
            return f"Kill switch for user {self.user} ({state})"
        if self.scope == KillSwitchScope.ACCOUNT:
            return f"Kill switch for account {self.broker_account} ({state})"
        return f"Global kill switch ({state})"
