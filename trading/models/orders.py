"""Orders we send to brokers, the fills they report, and our copy of the positions those fills make.

An order's status changes only through conditional updates, so a task that runs twice sends nothing twice.
"""

from django.db import models

from trading.models.accounts import BrokerAccount
from trading.models.choices import MONEY_DIGITS, PRICE_DIGITS, values_of
from trading.models.signals import Decision, Signal
from trading.models.traders import Trader


class OrderStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUBMITTING = "submitting", "Submitting"
    WORKING = "working", "Working"
    FILLED = "filled", "Filled"
    CANCELLED = "cancelled", "Cancelled"
    REJECTED = "rejected", "Rejected"
    UNKNOWN = "unknown", "Outcome unknown"
    FAILED = "failed", "Not placed"


OPEN_ORDER_STATUSES = (OrderStatus.WORKING,)
UNSENT_ORDER_STATUSES = (OrderStatus.PENDING,)


class OrderRole(models.TextChoices):
    ENTRY = "entry", "Entry"
    TAKE_PROFIT = "take_profit", "Take profit"
    STOP_LOSS = "stop_loss", "Stop loss"
    AVERAGE_DOWN = "average_down", "Average down"
    EXIT = "exit", "Exit"


class OrderAction(models.TextChoices):
    BUY = "Buy", "Buy"
    SELL = "Sell", "Sell"


class OrderType(models.TextChoices):
    MARKET = "Market", "Market"
    LIMIT = "Limit", "Limit"
    STOP = "Stop", "Stop"
    TRAILING_STOP = "TrailingStop", "Trailing stop"


class OrderCancelReason(models.TextChoices):
    """Why we withdrew an order (never sent, or cancelled at the broker); the error text is for people."""

    NOT_SENT = "not_sent", "Not sent"
    REPLACED = "replaced", "Replaced by a later decision's orders"
    NOTHING_TO_PROTECT = "nothing_to_protect", "Nothing left to protect"
    AVERAGE_DOWN_REPLAN = "average_down_replan", "Replaced after an average-down fill"
    RECONCILIATION = "reconciliation", "Replaced by reconciliation"
    LIQUIDATED = "liquidated", "Cancelled with its position's liquidation"
    ALREADY_FLAT = "already_flat", "The position was already flat"


class OrderQuerySet(models.QuerySet):
    def visible_to(self, user) -> "OrderQuerySet":
        """Return the orders on the user's broker accounts."""
        return self.filter(broker_account__owner=user)


class Order(models.Model):
    """One order we send (or sent) to a broker; its client id is stored before the broker hears of it."""

    Status = OrderStatus
    Role = OrderRole
    Action = OrderAction
    Type = OrderType
    CancelReason = OrderCancelReason

    decision = models.ForeignKey(
        Decision, on_delete=models.SET_NULL, null=True, blank=True, related_name="orders"
    )
    signal = models.ForeignKey(
        Signal, on_delete=models.SET_NULL, null=True, blank=True, related_name="orders"
    )
    trader = models.ForeignKey(
        Trader, on_delete=models.SET_NULL, null=True, blank=True, related_name="orders"
    )
    broker_account = models.ForeignKey(BrokerAccount, on_delete=models.CASCADE, related_name="orders")
    account_id = models.CharField("broker's account id", max_length=64)
    account_name = models.CharField(max_length=100, blank=True, help_text="The broker's account spec.")
    symbol = models.CharField(max_length=16, help_text="Contract root.")
    broker_symbol = models.CharField(max_length=32, blank=True, help_text="The symbol sent to the broker.")

    client_id = models.CharField(max_length=64, unique=True)
    broker_order_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    plan_key = models.CharField(max_length=16, blank=True, help_text="entry, exit, tp1, sl1, avg1 ...")
    sequence = models.PositiveSmallIntegerField(default=0, help_text="Place in its plan: sent in this order.")
    oco_group = models.CharField(max_length=16, blank=True)
    bracket_entry = models.ForeignKey(
        "self",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="bracket_legs",
        help_text="The entry this leg was sent with as one bracket.",
    )
    via_liquidation = models.BooleanField(default=False, help_text="Sent as the broker's liquidate-position.")

    role = models.CharField(max_length=16, choices=OrderRole.choices)
    action = models.CharField(max_length=4, choices=OrderAction.choices)
    order_type = models.CharField(max_length=16, choices=OrderType.choices)
    quantity = models.PositiveIntegerField()
    price = models.DecimalField(null=True, blank=True, **PRICE_DIGITS)
    stop_price = models.DecimalField(null=True, blank=True, **PRICE_DIGITS)
    trail_distance = models.DecimalField(null=True, blank=True, **PRICE_DIGITS)

    status = models.CharField(max_length=16, choices=OrderStatus.choices, default=OrderStatus.PENDING)
    error = models.TextField(blank=True, help_text="The broker's words when it refused, verbatim.")
    cancel_reason = models.CharField(
        max_length=24,
        choices=OrderCancelReason.choices,
        blank=True,
        help_text="Why we withdrew it, for code to act on; the error says it in words.",
    )
    replaced_by = models.ForeignKey(
        Decision,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="replaced_orders",
        help_text="The decision whose orders replaced this one.",
    )
    filled_quantity = models.PositiveIntegerField(default=0)
    avg_fill_price = models.DecimalField(null=True, blank=True, **PRICE_DIGITS)

    created_at = models.DateTimeField(auto_now_add=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OrderQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "sequence", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["decision", "account_id", "plan_key"],
                condition=models.Q(decision__isnull=False),
                name="trading_order_one_per_plan_key",
            ),
            # A broker's order id means something only together with its account.
            models.UniqueConstraint(
                fields=["broker_account", "broker_order_id"],
                condition=models.Q(broker_order_id__isnull=False),
                name="trading_order_unique_broker_id_per_account",
            ),
            models.CheckConstraint(
                condition=models.Q(quantity__gte=1), name="trading_order_quantity_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=values_of(OrderStatus)), name="trading_order_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(role__in=values_of(OrderRole)), name="trading_order_role_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(action__in=values_of(OrderAction)), name="trading_order_action_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(order_type__in=values_of(OrderType)), name="trading_order_type_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(cancel_reason__in=["", *values_of(OrderCancelReason)]),
                name="trading_order_cancel_reason_valid",
            ),
            models.CheckConstraint(
                condition=~models.Q(order_type="Limit") | models.Q(price__isnull=False),
                name="trading_order_limit_has_price",
            ),
            models.CheckConstraint(
                condition=~models.Q(order_type__in=["Stop", "TrailingStop"])
                | models.Q(stop_price__isnull=False),
                name="trading_order_stop_has_stop_price",
            ),
            models.CheckConstraint(
                condition=models.Q(filled_quantity__lte=models.F("quantity")),
                name="trading_order_fill_within_quantity",
            ),
            models.CheckConstraint(
                condition=~models.Q(client_id=""), name="trading_order_client_id_not_empty"
            ),
        ]
        indexes = [
            models.Index(
                fields=["broker_account", "account_id", "symbol", "status"], name="trading_order_book_idx"
            ),
            models.Index(fields=["status", "updated_at"], name="trading_order_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.quantity} {self.symbol} {self.order_type} ({self.status})"

    @property
    def is_open(self) -> bool:
        """Whether the order can still fill."""
        return self.status == OrderStatus.WORKING


class Fill(models.Model):
    """One execution the broker reported, applied once to its position."""

    broker_account = models.ForeignKey(BrokerAccount, on_delete=models.CASCADE, related_name="fills")
    account_id = models.CharField("broker's account id", max_length=64)
    order = models.ForeignKey(Order, on_delete=models.SET_NULL, null=True, blank=True, related_name="fills")
    broker_fill_id = models.CharField(max_length=64)
    broker_order_id = models.CharField(max_length=64)
    symbol = models.CharField(max_length=32, help_text="Contract root.")
    action = models.CharField(max_length=4, choices=OrderAction.choices)
    quantity = models.PositiveIntegerField()
    price = models.DecimalField(**PRICE_DIGITS)
    realized_pnl = models.DecimalField(default=0, **MONEY_DIGITS)
    session = models.DateField(help_text="CME trading day (a new one starts at 17:00 America/Chicago).")
    filled_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-filled_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["broker_account", "broker_fill_id"], name="trading_fill_applied_once"
            ),
            models.CheckConstraint(
                condition=models.Q(quantity__gte=1), name="trading_fill_quantity_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(action__in=values_of(OrderAction)), name="trading_fill_action_valid"
            ),
        ]
        indexes = [models.Index(fields=["broker_account", "session"], name="trading_fill_session_idx")]

    def __str__(self) -> str:
        return f"{self.action} {self.quantity} {self.symbol} @ {self.price.normalize()}"


class PositionQuerySet(models.QuerySet):
    def visible_to(self, user) -> "PositionQuerySet":
        """Return the positions of the user's broker accounts."""
        return self.filter(broker_account__owner=user)


class Position(models.Model):
    """Our copy of one broker position (per sub-account and contract root) and the P&L its fills realized."""

    broker_account = models.ForeignKey(BrokerAccount, on_delete=models.CASCADE, related_name="positions")
    account_id = models.CharField("broker's account id", max_length=64)
    account_name = models.CharField(max_length=100, blank=True)
    symbol = models.CharField(max_length=32, help_text="Contract root.")
    quantity = models.IntegerField(default=0, help_text="Signed contracts: negative is short.")
    avg_price = models.DecimalField(null=True, blank=True, **PRICE_DIGITS)
    realized_pnl = models.DecimalField(default=0, help_text="Since the first fill.", **MONEY_DIGITS)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PositionQuerySet.as_manager()

    class Meta:
        ordering = ["broker_account", "account_id", "symbol"]
        constraints = [
            models.UniqueConstraint(
                fields=["broker_account", "account_id", "symbol"], name="trading_position_one_per_contract"
            ),
            models.CheckConstraint(
                condition=models.Q(quantity=0, avg_price__isnull=True)
                | (~models.Q(quantity=0) & models.Q(avg_price__isnull=False)),
                name="trading_position_avg_price_iff_open",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.symbol} {self.quantity:+d} @ {self.avg_price or '-'}"
