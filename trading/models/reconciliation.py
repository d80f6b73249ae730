"""Reconciliation: each run that changed something (or failed) and every action it took, with the reason."""

from django.db import models

from trading.models.accounts import BrokerAccount
from trading.models.choices import values_of
from trading.models.orders import Order

__all__ = ["ReconcileAction", "ReconcileRun"]


class ReconcileRunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class ReconcileTrigger(models.TextChoices):
    SCHEDULE = "schedule", "Every minute"
    COMMAND = "command", "manage.py reconcile"


class ReconcileRun(models.Model):
    """One reconciliation of one broker account; runs that found everything in order are not stored."""

    Status = ReconcileRunStatus
    Trigger = ReconcileTrigger

    broker_account = models.ForeignKey(BrokerAccount, on_delete=models.CASCADE, related_name="reconcile_runs")
    trigger = models.CharField(max_length=16, choices=ReconcileTrigger.choices)
    status = models.CharField(
        max_length=16, choices=ReconcileRunStatus.choices, default=ReconcileRunStatus.RUNNING
    )
    actions_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, help_text="Why the run failed, in words.")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-pk"]
        verbose_name = "reconciliation run"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=values_of(ReconcileRunStatus)),
                name="trading_reconcilerun_status_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(trigger__in=values_of(ReconcileTrigger)),
                name="trading_reconcilerun_trigger_valid",
            ),
        ]
        indexes = [models.Index(fields=["broker_account", "-started_at"], name="trading_reconrun_acct_idx")]

    def __str__(self) -> str:
        return f"Reconciliation {self.pk} of {self.broker_account} ({self.status})"


class ReconcileActionKind(models.TextChoices):
    SETTLE = "settle", "Unknown order settled"
    ORDER_STATUS = "order_status", "Order status taken from the broker"
    FILLS = "fills", "Fills applied"
    POSITION = "position", "Position corrected"
    CANCEL_ORPHAN = "cancel_orphan", "Needless order cancelled"
    CANCEL_REPLACED = "cancel_replaced", "Order cancelled to be replaced"
    PLACE_PROTECTION = "place_protection", "Protective order placed"
    FLATTEN = "flatten", "Position flattened"
    RECONNECT = "reconnect", "Connection restored"
    ERROR = "error", "Failed"


class ReconcileAction(models.Model):
    """One thing a reconciliation did, and why."""

    Kind = ReconcileActionKind

    run = models.ForeignKey(ReconcileRun, on_delete=models.CASCADE, related_name="actions")
    broker_account = models.ForeignKey(
        BrokerAccount, on_delete=models.CASCADE, related_name="reconcile_actions"
    )
    kind = models.CharField(max_length=20, choices=ReconcileActionKind.choices)
    account_id = models.CharField("broker's account id", max_length=64, blank=True)
    symbol = models.CharField(max_length=32, blank=True, help_text="Contract root.")
    order = models.ForeignKey(
        Order, on_delete=models.SET_NULL, null=True, blank=True, related_name="reconcile_actions"
    )
    reason = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "reconciliation action"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=values_of(ReconcileActionKind)),
                name="trading_reconcileaction_kind_valid",
            ),
            models.CheckConstraint(condition=~models.Q(reason=""), name="trading_reconcileaction_has_reason"),
        ]
        indexes = [
            # The back-off checks look up recent actions of one position.
            models.Index(
                fields=["broker_account", "account_id", "symbol", "kind", "created_at"],
                name="trading_reconact_pos_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.reason[:60]}"
