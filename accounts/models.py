"""Users of the site: buyers, traders and staff."""

from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.db.models.functions import Lower


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
