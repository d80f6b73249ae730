"""Invite-only Pine Scripts, who has access to them on TradingView, and the audit trail of every operation."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from justtrades.encryption import EncryptedTextField

pine_id_validator = RegexValidator(
    r"^PUB;[0-9a-f]{32}$",
    "A TradingView script id is PUB; followed by 32 hexadecimal characters, "
    "for example PUB;3be120ba74944ca7b32ad644f40aaff2.",
)


class Actor(models.TextChoices):
    """Who asked for an operation."""

    USER = "user", "User"
    STAFF = "staff", "Staff"
    SYSTEM = "system", "System"


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
    error_code = models.CharField(
        max_length=32,
        blank=True,
        help_text="The kind of the last error (user_not_found, session_expired, ...).",
    )
    attempts = models.PositiveIntegerField(default=0)
    # Who asked for the change that is waiting to be made on TradingView, for the audit log.
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_by_actor = models.CharField(max_length=16, choices=Actor.choices, default=Actor.SYSTEM)
    # A worker holds the row while it talks to TradingView, so two workers never act on it at once.
    claimed_until = models.DateTimeField(null=True, blank=True)
    claim_token = models.CharField(max_length=32, blank=True)
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

    @property
    def is_live(self) -> bool:
        """Whether the row still counts as the user's access (anything but removed)."""
        return self.status != self.Status.REMOVED

    @property
    def user_facing_error(self) -> str:
        """The last error in words for the buyer: their own mistakes in full, operator problems in short."""
        if not self.last_error:
            return ""
        if self.error_code in USER_FIXABLE_ERROR_CODES:
            return self.last_error
        return (
            "TradingView did not complete this request. The team has been told and will retry it; "
            "you do not need to do anything."
        )


# Errors the buyer can fix themselves (a misspelt username); every other one is the operator's to fix.
USER_FIXABLE_ERROR_CODES = frozenset({"user_not_found"})


class AccessLog(models.Model):
    """One operation against TradingView (or a decision about one), kept forever, never edited."""

    class Operation(models.TextChoices):
        VALIDATE_USERNAME = "validate_username", "Validate username"
        GRANT = "grant", "Grant"
        EXTEND = "extend", "Extend"
        REMOVE = "remove", "Remove"
        SYNC = "sync", "Sync"
        LOGIN = "login", "Sign in to TradingView"
        CHANGE_USERNAME = "change_username", "Change TradingView username"
        DEACTIVATE = "deactivate", "Deactivate script"

    Actor = Actor

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


class TradingViewSession(models.Model):
    """The seller's TradingView session cookies, encrypted, one row shared by every process."""

    class Source(models.TextChoices):
        SIGN_IN = "sign_in", "Signed in with the password"
        PASTED = "pasted", "Pasted from a browser"

    SINGLETON_ID = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_ID, editable=False)
    cookies = EncryptedTextField(blank=True, help_text="JSON of sessionid and sessionid_sign, encrypted.")
    source = models.CharField(max_length=16, choices=Source.choices, blank=True)
    saved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    saved_at = models.DateTimeField(null=True, blank=True)
    cleared_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "TradingView session"
        verbose_name_plural = "TradingView session"
        constraints = [
            models.CheckConstraint(condition=models.Q(id=1), name="pineaccess_tradingviewsession_singleton"),
        ]

    def __str__(self) -> str:
        return "TradingView session" + ("" if self.has_cookies else " (none saved)")

    @property
    def has_cookies(self) -> bool:
        """Whether a session is saved."""
        return bool(self.cookies)


class SyncReport(models.Model):
    """One comparison of a script's access list on TradingView with the database, and what was fixed."""

    class Outcome(models.TextChoices):
        CLEAN = "clean", "In sync"
        DRIFT = "drift", "Drift found"
        FIXED = "fixed", "Drift fixed"
        PARTLY_FIXED = "partly_fixed", "Drift partly fixed"
        FAILED = "failed", "Failed"

    script = models.ForeignKey(PineScript, on_delete=models.CASCADE, related_name="sync_reports")
    pine_id = models.CharField(max_length=36)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, db_index=True)
    fix_requested = models.BooleanField(default=False)
    actor = models.CharField(max_length=16, choices=Actor.choices, default=Actor.SYSTEM)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    tradingview_count = models.PositiveIntegerField(default=0, help_text="Users listed on TradingView.")
    database_count = models.PositiveIntegerField(default=0, help_text="Active rows here.")
    only_on_tradingview = models.JSONField(default=list, blank=True)
    only_here = models.JSONField(default=list, blank=True)
    different_expiry = models.JSONField(default=list, blank=True)
    fixes = models.JSONField(default=list, blank=True, help_text="What was changed, one line each.")
    fix_errors = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["script", "-started_at"], name="pineaccess_sync_script_idx")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(outcome__in=["clean", "drift", "fixed", "partly_fixed", "failed"]),
                name="pineaccess_syncreport_outcome_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"Sync of {self.pine_id} at {self.started_at:%Y-%m-%d %H:%M}: {self.get_outcome_display()}"

    @property
    def drift_count(self) -> int:
        """How many differences were found in all three directions."""
        return len(self.only_on_tradingview) + len(self.only_here) + len(self.different_expiry)
