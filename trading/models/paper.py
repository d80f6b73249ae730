"""The paper broker's own book: the simulated exchange and account.

Only trading/brokers/paper/ writes here; the rest of the product sees it through the Broker interface,
exactly as it sees Tradovate.
"""

from django.db import models

from trading.models.accounts import BrokerAccount
from trading.models.choices import MONEY_DIGITS, PRICE_DIGITS, values_of
from trading.models.orders import OrderAction, OrderType


class PaperOrderStatus(models.TextChoices):
    PENDING = "pending", "Waiting for its entry"
    WORKING = "working", "Working"
    FILLED = "filled", "Filled"
    CANCELLED = "cancelled", "Cancelled"


class PaperOrder(models.Model):
    """An order on the paper broker's book."""

    Status = PaperOrderStatus

    broker_account = models.ForeignKey(BrokerAccount, on_delete=models.CASCADE, related_name="paper_orders")
    account_id = models.CharField(max_length=64)
    client_id = models.CharField(max_length=64)
    symbol = models.CharField(max_length=32, help_text="As sent.")
    root = models.CharField(max_length=16, help_text="Contract root: the key of prices and positions.")
    action = models.CharField(max_length=4, choices=OrderAction.choices)
    order_type = models.CharField(max_length=16, choices=OrderType.choices)
    quantity = models.PositiveIntegerField()
    price = models.DecimalField(null=True, blank=True, **PRICE_DIGITS)
    stop_price = models.DecimalField(null=True, blank=True, **PRICE_DIGITS)
    trail_distance = models.DecimalField(null=True, blank=True, **PRICE_DIGITS)
    time_in_force = models.CharField(max_length=4, default="Day")
    status = models.CharField(max_length=16, choices=PaperOrderStatus.choices)
    parent = models.ForeignKey(
        "self",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="children",
        help_text="Bracket entry.",
    )
    oco_group = models.CharField(max_length=40, blank=True)
    fill_price = models.DecimalField(null=True, blank=True, **PRICE_DIGITS)
    filled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["broker_account", "client_id"], name="trading_paperorder_unique_client_id"
            ),
            models.CheckConstraint(
                condition=models.Q(quantity__gte=1), name="trading_paperorder_quantity_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=values_of(PaperOrderStatus)),
                name="trading_paperorder_status_valid",
            ),
        ]
        indexes = [
            models.Index(
                fields=["broker_account", "root"],
                condition=models.Q(status="working"),
                name="trading_paperorder_work_idx",
            ),
            # A new price finds the resting orders it reaches by contract and price, not by account.
            models.Index(
                fields=["root", "price"],
                condition=models.Q(status="working"),
                name="trading_paperorder_limit_idx",
            ),
            models.Index(
                fields=["root", "stop_price"],
                condition=models.Q(status="working"),
                name="trading_paperorder_stop_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"Paper {self.action} {self.quantity} {self.root} {self.order_type} ({self.status})"


class PaperPosition(models.Model):
    """The paper position in one contract root of one sub-account; its row lock serialises that book."""

    broker_account = models.ForeignKey(
        BrokerAccount, on_delete=models.CASCADE, related_name="paper_positions"
    )
    account_id = models.CharField(max_length=64)
    root = models.CharField(max_length=16)
    quantity = models.IntegerField(default=0)
    avg_price = models.DecimalField(null=True, blank=True, **PRICE_DIGITS)
    realized_pnl = models.DecimalField(default=0, **MONEY_DIGITS)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["broker_account", "account_id", "root"]
        constraints = [
            models.UniqueConstraint(
                fields=["broker_account", "account_id", "root"], name="trading_paperposition_one_per_root"
            ),
            models.CheckConstraint(
                condition=models.Q(quantity=0, avg_price__isnull=True)
                | (~models.Q(quantity=0) & models.Q(avg_price__isnull=False)),
                name="trading_paperposition_avg_price_iff_open",
            ),
        ]

    def __str__(self) -> str:
        return f"Paper {self.root} {self.quantity:+d}"


class PaperFill(models.Model):
    """One simulated execution."""

    broker_account = models.ForeignKey(BrokerAccount, on_delete=models.CASCADE, related_name="paper_fills")
    account_id = models.CharField(max_length=64)
    order = models.ForeignKey(PaperOrder, on_delete=models.CASCADE, related_name="fills")
    root = models.CharField(max_length=16)
    action = models.CharField(max_length=4, choices=OrderAction.choices)
    quantity = models.PositiveIntegerField()
    price = models.DecimalField(**PRICE_DIGITS)
    realized_pnl = models.DecimalField(default=0, **MONEY_DIGITS)
    session = models.DateField()
    filled_at = models.DateTimeField()

    class Meta:
        ordering = ["-pk"]
        indexes = [
            models.Index(
                fields=["broker_account", "account_id", "session"], name="trading_paperfill_sess_idx"
            )
        ]

    def __str__(self) -> str:
        return f"Paper fill {self.action} {self.quantity} {self.root} @ {self.price.normalize()}"
