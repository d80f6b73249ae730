"""Broker accounts (a paper simulation or a Tradovate login) and the trading accounts under them."""

import uuid

from django.conf import settings
from django.db import models

from justtrades.encryption import EncryptedTextField
from trading.models.choices import values_of


def new_device_id() -> str:
    """Return a fresh device id; Tradovate wants one stable id per login, generated once and kept."""
    return str(uuid.uuid4())


class BrokerAccountQuerySet(models.QuerySet):
    def owned_by(self, user) -> "BrokerAccountQuerySet":
        """Return the accounts of one user."""
        return self.filter(owner=user)


class BrokerKind(models.TextChoices):
    PAPER = "paper", "Paper (simulated)"
    TRADOVATE = "tradovate", "Tradovate"


class BrokerAccountStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    NEEDS_ATTENTION = "needs_attention", "Needs attention"


class TokenSource(models.TextChoices):
    PASSWORD = "password", "Username and password"
    OAUTH = "oauth", "OAuth"


class BrokerAccount(models.Model):
    """A user's connection to a broker: the built-in paper broker or a Tradovate login (live or demo)."""

    Kind = BrokerKind
    Status = BrokerAccountStatus
    TokenSource = TokenSource

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="broker_accounts"
    )
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.PAPER)
    is_demo = models.BooleanField(
        "demo", default=True, help_text="Tradovate's demo environment (simulated money) instead of live."
    )
    # Secrets: encrypted at rest, never shown back on a page, in the admin or through the API.
    username = EncryptedTextField(blank=True)
    password = EncryptedTextField(blank=True)
    access_token = EncryptedTextField(blank=True, help_text="The current Tradovate access token.")
    access_token_expires_at = models.DateTimeField(null=True, blank=True)
    access_token_source = models.CharField(max_length=16, choices=TokenSource.choices, blank=True)
    oauth_token = EncryptedTextField(blank=True, help_text="The token from the last OAuth connect.")
    oauth_token_expires_at = models.DateTimeField(null=True, blank=True)
    oauth_refresh_token = EncryptedTextField(blank=True)
    broker_user_id = models.BigIntegerField(null=True, blank=True, help_text="Tradovate's id of the login.")
    token_renewal_until = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Held by the worker renewing the token or logging in, until then at most.",
    )
    reconcile_until = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Held by the reconciliation running, until then at most.",
    )
    device_id = models.CharField(max_length=64, default=new_device_id, editable=False)
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.ACTIVE)
    status_reason = models.CharField(
        max_length=32, blank=True, help_text="Machine-readable cause, such as captcha or credentials."
    )
    status_message = models.TextField(blank=True, help_text="What the owner should do, in words.")
    status_changed_at = models.DateTimeField(null=True, blank=True)
    retry_not_before = models.DateTimeField(
        null=True, blank=True, help_text="No login is attempted before this time (after a captcha)."
    )
    subaccounts_synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = BrokerAccountQuerySet.as_manager()

    class Meta:
        ordering = ["name", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "name"],
                name="trading_brokeraccount_unique_name_per_owner",
                violation_error_message="You already have a broker account with this name.",
            ),
            models.CheckConstraint(
                condition=models.Q(kind__in=values_of(BrokerKind)), name="trading_brokeraccount_kind_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=values_of(BrokerAccountStatus)),
                name="trading_brokeraccount_status_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(access_token_source__in=["", *values_of(TokenSource)]),
                name="trading_brokeraccount_token_source_valid",
            ),
            # The paper broker is a simulation: it has no login and nothing live.
            models.CheckConstraint(
                condition=models.Q(kind="tradovate")
                | models.Q(is_demo=True, username="", password="", access_token="", oauth_token=""),
                name="trading_brokeraccount_paper_has_no_credentials",
                violation_error_message="A paper account is simulated: it has no login and is never live.",
            ),
            models.CheckConstraint(condition=~models.Q(name=""), name="trading_brokeraccount_name_not_empty"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_paper(self) -> bool:
        """Whether this is the built-in simulated broker."""
        return self.kind == self.Kind.PAPER

    @property
    def environment_label(self) -> str:
        """Return Paper, Demo or Live."""
        if self.is_paper:
            return "Paper"
        return "Demo" if self.is_demo else "Live"

    @property
    def needs_attention(self) -> bool:
        """Whether the owner must act before the account can trade."""
        return self.status == self.Status.NEEDS_ATTENTION


class BrokerSubAccount(models.Model):
    """A trading account under a broker login, as the broker lists it; orders name it by broker_id."""

    account = models.ForeignKey(BrokerAccount, on_delete=models.CASCADE, related_name="subaccounts")
    broker_id = models.CharField(
        "broker's account id", max_length=64, help_text="Tradovate's accountId; orders are sent to it."
    )
    name = models.CharField(max_length=100, help_text="Tradovate's account name (accountSpec).")
    active = models.BooleanField(
        default=True,
        help_text="Traded: listed by the broker and chosen by the owner (off when either stops).",
    )
    synced_at = models.DateTimeField(auto_now=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["account", "name", "pk"]
        verbose_name = "sub-account"
        constraints = [
            models.UniqueConstraint(
                fields=["account", "broker_id"],
                name="trading_subaccount_unique_broker_id_per_account",
                violation_error_message="This broker account already lists a sub-account with this id.",
            ),
            models.CheckConstraint(
                condition=~models.Q(broker_id=""), name="trading_subaccount_broker_id_not_empty"
            ),
        ]

    def __str__(self) -> str:
        return self.name
