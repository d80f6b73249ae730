"""Execution: signals, decisions per trader, orders, fills, positions, kill switches and the paper book.

Every row here has a status that changes only through conditional updates (`filter(status=...).update(...)`),
so a task that runs twice finds nothing left to do the second time.
"""

from django.conf import settings
from django.db import models

from trading.models.accounts import BrokerAccount
from trading.models.choices import values_of
from trading.models.recorders import Recorder
from trading.models.traders import Trader

__all__ = [
    "Decision",
    "Fill",
    "KillSwitch",
    "LastPrice",
    "Order",
    "PaperFill",
    "PaperOrder",
    "PaperPosition",
    "Position",
    "Signal",
    "TraderState",
]

# Prices and quantities as the alert parser bounds them: below 10^10 with at most 10 decimal places.
ALERT_DIGITS = {"max_digits": 20, "decimal_places": 10}
PRICE_DIGITS = {"max_digits": 18, "decimal_places": 8}
MONEY_DIGITS = {"max_digits": 16, "decimal_places": 2}


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


class LastPrice(models.Model):
    """The last price known for a contract root, per user: from their signals and POST /api/prices/."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="last_prices")
    symbol = models.CharField(max_length=16, help_text="Contract root.")
    price = models.DecimalField(**PRICE_DIGITS)
    source = models.CharField(max_length=32, blank=True, help_text="signal:<id> or api.")
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["owner", "symbol"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "symbol"], name="trading_lastprice_one_per_symbol"),
            models.CheckConstraint(condition=models.Q(price__gt=0), name="trading_lastprice_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.symbol} {self.price.normalize()}"


# The paper broker's own book: the simulated exchange and account. Only trading/brokers/paper.py writes here;
# the rest of the product sees it through the Broker interface, exactly as it sees Tradovate.


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
