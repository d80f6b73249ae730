"""Signals as they arrived, each trader's decision on them, and the counters a trader's filters keep.

Every row here has a status that changes only through conditional updates (`filter(status=...).update(...)`),
so a task that runs twice finds nothing left to do the second time.
"""

from django.db import models

from trading.models.choices import values_of
from trading.models.recorders import Recorder
from trading.models.traders import Trader

# Prices and quantities as the alert parser bounds them: below 10^10 with at most 10 decimal places.
ALERT_DIGITS = {"max_digits": 20, "decimal_places": 10}


class SignalStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSING = "processing", "Processing"
    PROCESSED = "processed", "Processed"
    REFUSED = "refused", "Refused by the recorder's filters"
    REJECTED = "rejected", "Rejected"
    IGNORED = "ignored", "Ignored (recorder off)"
    STALE = "stale", "Stale"
    BLOCKED = "blocked", "Blocked by the kill switch"
    FAILED = "failed", "Failed"


class SignalQuerySet(models.QuerySet):
    def visible_to(self, user) -> "SignalQuerySet":
        """Return the signals of the user's own recorders."""
        return self.filter(recorder__owner=user)


class Signal(models.Model):
    """One alert as it arrived (raw body, source, time), what was read from it, and what became of it."""

    Status = SignalStatus

    recorder = models.ForeignKey(Recorder, on_delete=models.CASCADE, related_name="signals")
    status = models.CharField(max_length=16, choices=SignalStatus.choices, default=SignalStatus.PENDING)
    reason = models.TextField(blank=True, help_text="Why it was rejected, refused, stale, blocked or failed.")

    received_at = models.DateTimeField()
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    content_type = models.CharField(max_length=100, blank=True)
    raw_body = models.TextField(blank=True)
    fields = models.JSONField(default=dict, blank=True, help_text="Every key the alert sent, as sent.")

    action = models.CharField(max_length=8, blank=True)
    ticker = models.CharField(max_length=64, blank=True)
    quantity = models.DecimalField(null=True, blank=True, **ALERT_DIGITS)
    price = models.DecimalField(null=True, blank=True, **ALERT_DIGITS)
    market_position = models.CharField(max_length=8, blank=True)
    position_size = models.DecimalField(null=True, blank=True, **ALERT_DIGITS)
    # NULL, not "", when absent: the unique constraint must not collide on alerts without an id.
    alert_id = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    fire_time = models.DateTimeField(null=True, blank=True)
    comment = models.TextField(blank=True)

    # Identical bodies within WEBHOOK_DEDUP_SECONDS are one alert: the digest and the time bucket it fell in.
    fingerprint = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    dedup_bucket = models.BigIntegerField(null=True, blank=True)

    # Work claim: whoever set claim_token owns the signal until lease_expires_at.
    claim_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    processed_at = models.DateTimeField(null=True, blank=True)

    # The recorder's own verdict (its filters and virtual position).
    move = models.CharField(max_length=8, blank=True)
    recorder_position_before = models.IntegerField(null=True, blank=True)
    recorder_position_after = models.IntegerField(null=True, blank=True)

    objects = SignalQuerySet.as_manager()

    class Meta:
        ordering = ["-received_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["recorder", "alert_id"],
                condition=models.Q(alert_id__isnull=False),
                name="trading_signal_unique_alert_id_per_recorder",
            ),
            models.UniqueConstraint(
                fields=["recorder", "fingerprint", "dedup_bucket"],
                condition=models.Q(fingerprint__isnull=False),
                name="trading_signal_unique_body_per_bucket",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=values_of(SignalStatus)), name="trading_signal_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(action__in=["", "buy", "sell", "close"]),
                name="trading_signal_action_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(quantity__isnull=True) | models.Q(quantity__gt=0),
                name="trading_signal_quantity_positive",
            ),
            models.CheckConstraint(
                condition=models.Q(fingerprint__isnull=True) | models.Q(dedup_bucket__isnull=False),
                name="trading_signal_fingerprint_has_bucket",
            ),
            models.CheckConstraint(
                condition=~models.Q(alert_id=""), name="trading_signal_alert_id_not_empty"
            ),
        ]
        indexes = [
            models.Index(fields=["recorder", "-received_at"], name="trading_signal_log_idx"),
            # The sweeper's scan and the in-order check of each claim: small, as finished signals leave them.
            models.Index(
                fields=["received_at"],
                condition=models.Q(status__in=["pending", "processing"]),
                name="trading_signal_open_idx",
            ),
            models.Index(
                fields=["recorder", "id"],
                condition=models.Q(status__in=["pending", "processing"]),
                name="trading_signal_queue_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"Signal {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        """Whether no worker will touch this signal again."""
        return self.status not in (SignalStatus.PENDING, SignalStatus.PROCESSING)


class DecisionStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    EXECUTING = "executing", "Executing"
    EXECUTED = "executed", "Orders sent"
    NOTHING = "nothing", "Nothing to do"
    REFUSED = "refused", "Refused by filters"
    BLOCKED = "blocked", "Blocked by the kill switch"
    STALE = "stale", "Stale"
    FAILED = "failed", "Failed"
    UNSETTLED = "unsettled", "Outcome unknown"


class DecisionQuerySet(models.QuerySet):
    def visible_to(self, user) -> "DecisionQuerySet":
        """Return decisions of traders on the user's accounts or of signals of the user's recorders."""
        return self.filter(models.Q(trader__account__owner=user) | models.Q(signal__recorder__owner=user))


class Decision(models.Model):
    """What one trader did with one signal: its filters' verdict per sub-account and the orders after it."""

    Status = DecisionStatus

    signal = models.ForeignKey(Signal, on_delete=models.CASCADE, related_name="decisions")
    trader = models.ForeignKey(Trader, on_delete=models.CASCADE, related_name="decisions")
    status = models.CharField(max_length=16, choices=DecisionStatus.choices, default=DecisionStatus.PENDING)
    reason = models.TextField(blank=True)
    move = models.CharField(max_length=8, blank=True)
    quantity = models.PositiveIntegerField(
        default=0, help_text="Contracts entered or exited, all sub-accounts."
    )
    details = models.JSONField(
        default=list,
        blank=True,
        help_text="Per sub-account: verdict, reason, positions before and after, notes.",
    )

    claim_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    decided_at = models.DateTimeField(null=True, blank=True, help_text="When the orders were planned.")
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = DecisionQuerySet.as_manager()

    class Meta:
        ordering = ["signal", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["signal", "trader"], name="trading_decision_one_per_signal_and_trader"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=values_of(DecisionStatus)), name="trading_decision_status_valid"
            ),
        ]
        indexes = [
            models.Index(
                fields=["created_at"],
                condition=models.Q(status__in=["pending", "executing"]),
                name="trading_decision_open_idx",
            ),
            # A trader's decisions run in order: each claim looks for the earliest unfinished one.
            models.Index(
                fields=["trader", "id"],
                condition=models.Q(status__in=["pending", "executing"]),
                name="trading_decision_queue_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"Decision {self.pk} ({self.status})"


class TraderState(models.Model):
    """The counters a trader's filters need: trading.risk.RiskState less the position (the broker's)."""

    trader = models.OneToOneField(Trader, on_delete=models.CASCADE, primary_key=True, related_name="state")
    last_signal_at = models.DateTimeField(null=True, blank=True)
    signals_this_session = models.PositiveIntegerField(default=0)
    signal_count = models.PositiveIntegerField(default=0)
    session = models.DateField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"State of trader {self.trader_id}"
