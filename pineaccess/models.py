"""Invite-only Pine Scripts, who has access to them on TradingView, and the audit trail of every operation."""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

pine_id_validator = RegexValidator(
    r"^PUB;[0-9a-f]{32}$",
    "A TradingView script id is PUB; followed by 32 hexadecimal characters, "
    "for example PUB;3be120ba74944ca7b32ad644f40aaff2.",
)


class PineScript(models.Model):
    """An invite-only script in the seller's TradingView account."""

    pine_id = models.CharField(
        "TradingView script id", max_length=36, unique=True, validators=[pine_id_validator]
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    active = models.BooleanField(default=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(pine_id__regex=r"^PUB;[0-9a-f]{32}$"),
                name="pineaccess_pinescript_pine_id_format",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.pine_id})"


class ScriptAccess(models.Model):
    """One user's access to one script on TradingView, from request to removal."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACTIVE = "active", "Active"
        FAILED = "failed", "Failed"
        REMOVING = "removing", "Removing"
        REMOVED = "removed", "Removed"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="script_accesses"
    )
    script = models.ForeignKey(PineScript, on_delete=models.CASCADE, related_name="accesses")
    tradingview_username = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty for lifetime access.")
    granted_at = models.DateTimeField(null=True, blank=True)
    removed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "script accesses"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "script"],
                condition=~models.Q(status="removed"),
                name="pineaccess_scriptaccess_one_live_row_per_user_and_script",
                violation_error_message="This user already has access to this script.",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "active", "failed", "removing", "removed"]),
                name="pineaccess_scriptaccess_status_valid",
            ),
        ]
        indexes = [models.Index(fields=["status", "expires_at"], name="pineaccess_access_expiry_idx")]

    def __str__(self) -> str:
        return f"{self.tradingview_username} → {self.script.name} ({self.status})"

    @property
    def is_lifetime(self) -> bool:
        """Whether the access never expires."""
        return self.expires_at is None


class AccessLog(models.Model):
    """One operation against TradingView (or a decision about one), kept forever, never edited."""

    class Operation(models.TextChoices):
        VALIDATE_USERNAME = "validate_username", "Validate username"
        GRANT = "grant", "Grant"
        EXTEND = "extend", "Extend"
        REMOVE = "remove", "Remove"
        SYNC = "sync", "Sync"
        LOGIN = "login", "Sign in to TradingView"

    class Actor(models.TextChoices):
        USER = "user", "User"
        STAFF = "staff", "Staff"
        SYSTEM = "system", "System"

    class Outcome(models.TextChoices):
        SUCCESS = "success", "Success"
        FAILURE = "failure", "Failure"

    operation = models.CharField(max_length=32, choices=Operation.choices, db_index=True)
    actor = models.CharField(max_length=16, choices=Actor.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    target_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    tradingview_username = models.CharField(max_length=64, blank=True)
    pine_id = models.CharField(max_length=36, blank=True, db_index=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    detail = models.TextField(blank=True, help_text="TradingView's answer, in short.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_operation_display()} {self.tradingview_username} {self.pine_id}: {self.outcome}"
