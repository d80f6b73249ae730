"""Users of the site, the one-time access keys that let them in, and the record of approval decisions."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone


class JustTradesUserManager(UserManager):
    """Creates superusers already approved, since nobody is there to approve them."""

    def create_superuser(self, username, email=None, password=None, **extra_fields):
        extra_fields.setdefault("approval_status", User.ApprovalStatus.APPROVED)
        return super().create_superuser(username, email, password, **extra_fields)


class User(AbstractUser):
    """A person with a login; approval gates everything but the login page."""

    class ApprovalStatus(models.TextChoices):
        PENDING = "pending", "Pending approval"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    approval_status = models.CharField(
        max_length=16, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING, db_index=True
    )
    # NULL, not "", for "none yet": the case-insensitive unique constraint must not collide on blanks.
    tradingview_username = models.CharField(  # noqa: DJ001
        "TradingView username", max_length=64, blank=True, null=True, help_text="One per user, unique."
    )
    tradingview_verified = models.BooleanField(
        "TradingView username verified",
        default=False,
        help_text="Whether TradingView confirmed that the username exists.",
    )
    time_zone = models.CharField(max_length=64, default="America/Chicago")

    objects = JustTradesUserManager()

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
        constraints = [
            models.UniqueConstraint(
                Lower("tradingview_username"),
                name="accounts_user_tradingview_username_ci_unique",
                violation_error_message="This TradingView username is already linked to another account.",
            ),
            models.CheckConstraint(
                condition=models.Q(approval_status__in=["pending", "approved", "rejected"]),
                name="accounts_user_approval_status_valid",
            ),
        ]

    @property
    def is_approved(self) -> bool:
        """Whether the user may use the site."""
        return self.approval_status == self.ApprovalStatus.APPROVED


class AccessKeyQuerySet(models.QuerySet):
    """Filters by the state a key is in; expiry depends on the clock, so it is computed, never stored."""

    def _open(self) -> AccessKeyQuerySet:
        return self.filter(redeemed_at__isnull=True, revoked_at__isnull=True)

    def unused(self) -> AccessKeyQuerySet:
        """Keys that can still be redeemed."""
        now = timezone.now()
        return self._open().filter(models.Q(valid_until__isnull=True) | models.Q(valid_until__gt=now))

    def expired(self) -> AccessKeyQuerySet:
        """Keys nobody redeemed before their valid-until time."""
        return self._open().filter(valid_until__lte=timezone.now())

    def redeemed(self) -> AccessKeyQuerySet:
        """Keys someone registered (or added scripts) with."""
        return self.filter(redeemed_at__isnull=False)

    def revoked(self) -> AccessKeyQuerySet:
        """Keys staff withdrew before anyone used them."""
        return self.filter(revoked_at__isnull=False)

    def in_state(self, state: str) -> AccessKeyQuerySet:
        """Keys in one of AccessKey.State's values."""
        by_state = {
            AccessKey.State.UNUSED: self.unused,
            AccessKey.State.REDEEMED: self.redeemed,
            AccessKey.State.REVOKED: self.revoked,
            AccessKey.State.EXPIRED: self.expired,
        }
        return by_state[AccessKey.State(state)]()


class AccessKey(models.Model):
    """A one-time key staff hand out; only its hash is stored, the raw key is shown once at creation."""

    class State(models.TextChoices):
        UNUSED = "unused", "Unused"
        REDEEMED = "redeemed", "Redeemed"
        REVOKED = "revoked", "Revoked"
        EXPIRED = "expired", "Expired"

    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    note = models.CharField(
        max_length=200, blank=True, help_text="For staff: who the key is for, an order id."
    )
    valid_until = models.DateTimeField(
        null=True, blank=True, help_text="Empty: the key can be redeemed at any time until it is used."
    )
    scripts = models.ManyToManyField(
        "pineaccess.PineScript",
        blank=True,
        related_name="access_keys",
        help_text="Scripts granted on redemption; none means the default scripts (DEFAULT_PINE_IDS).",
    )
    access_days = models.PositiveIntegerField(
        "access duration (days)", null=True, blank=True, help_text="Empty for lifetime access."
    )
    auto_approve = models.BooleanField(
        default=True, help_text="Redeeming approves the account at once; otherwise staff approve it."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    redeemed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="redeemed_access_keys",
    )
    redeemed_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = AccessKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(redeemed_at__isnull=True, redeemed_by__isnull=True)
                | models.Q(redeemed_at__isnull=False, redeemed_by__isnull=False),
                name="accounts_accesskey_redeemed_by_and_at_together",
            ),
            models.CheckConstraint(
                condition=models.Q(redeemed_at__isnull=True) | models.Q(revoked_at__isnull=True),
                name="accounts_accesskey_not_both_redeemed_and_revoked",
            ),
            models.CheckConstraint(
                condition=models.Q(access_days__isnull=True) | models.Q(access_days__gte=1),
                name="accounts_accesskey_access_days_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"Access key #{self.pk}" + (f" ({self.note})" if self.note else "")

    @property
    def state(self) -> str:
        """Which of State's values the key is in now."""
        if self.redeemed_at is not None:
            return self.State.REDEEMED
        if self.revoked_at is not None:
            return self.State.REVOKED
        if self.valid_until is not None and self.valid_until <= timezone.now():
            return self.State.EXPIRED
        return self.State.UNUSED

    @property
    def is_lifetime(self) -> bool:
        """Whether the access it grants never expires."""
        return self.access_days is None

    @property
    def duration_label(self) -> str:
        """The access it grants, in words."""
        if self.access_days is None:
            return "Lifetime"
        return f"{self.access_days} day" + ("" if self.access_days == 1 else "s")


class ApprovalLog(models.Model):
    """One approval decision about a user: who made it, when and why. Never edited, never deleted."""

    class Decision(models.TextChoices):
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="approval_logs")
    decision = models.CharField(max_length=16, choices=Decision.choices)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The staff member; empty when an access key with auto-approve decided.",
    )
    access_key = models.ForeignKey(
        AccessKey,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The auto-approving key that decided, if one did.",
    )
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(decision__in=["approved", "rejected"]),
                name="accounts_approvallog_decision_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.decision} by {self.decided_by_label}"

    @property
    def decided_by_label(self) -> str:
        """Who decided, in words."""
        if self.decided_by_id is not None:
            return str(self.decided_by)
        if self.access_key_id is not None:
            return f"access key #{self.access_key_id} (auto-approve)"
        return "system"
