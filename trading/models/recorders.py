"""Recorders (one per strategy: a webhook, its settings and filters) and their virtual performance."""

from django.conf import settings
from django.db import models

from justtrades.encryption import EncryptedTextField
from trading.models.choices import DirectionFilter, DistanceUnit, StopType, StopUnit, values_of
from trading.risk import DEFAULT_TIMEZONE

MAX_TP_TARGETS = 10

# The recorder fields trading.risk.RiskSettings and trading.plans.PlanSettings read (tp_targets are rows), in
# the order pages show them; a trader may override each one.
RISK_SETTING_FIELDS = (
    "initial_position_size",
    "add_position_size",
    "time_filter_1_enabled",
    "time_filter_1_start",
    "time_filter_1_stop",
    "time_filter_2_enabled",
    "time_filter_2_start",
    "time_filter_2_stop",
    "timezone",
    "direction_filter",
    "signal_cooldown",
    "max_signals_per_session",
    "max_daily_loss",
    "max_contracts_per_trade",
    "signal_delay_nth",
    "auto_flat_after_cutoff",
)
PLAN_SETTING_FIELDS = (
    "tp_units",
    "sl_enabled",
    "sl_amount",
    "sl_units",
    "sl_type",
    "avg_down_enabled",
    "avg_down_amount",
    "avg_down_point",
    "avg_down_units",
)
SETTING_FIELDS = RISK_SETTING_FIELDS + PLAN_SETTING_FIELDS


def time_filter_valid(prefix: str, *, nullable_enabled: bool = False) -> models.Q:
    """Return the condition that a time filter that is on has a start and a different stop."""
    enabled, start, stop = f"{prefix}_enabled", f"{prefix}_start", f"{prefix}_stop"
    off = models.Q(**{enabled: False})
    if nullable_enabled:
        off |= models.Q(**{f"{enabled}__isnull": True})
    complete = models.Q(**{f"{start}__isnull": False, f"{stop}__isnull": False}) & ~models.Q(
        **{start: models.F(stop)}
    )
    return off | complete


class RecorderQuerySet(models.QuerySet):
    def owned_by(self, user) -> "RecorderQuerySet":
        """Return the recorders one user owns and may change."""
        return self.filter(owner=user)

    def visible_to(self, user) -> "RecorderQuerySet":
        """Return the user's own recorders and everyone's public ones (read-only for non-owners)."""
        return self.filter(models.Q(owner=user) | models.Q(is_private=False))


class StrategyType(models.TextChoices):
    STRATEGY = "strategy", "Strategy (alerts report the strategy's orders)"
    INDICATOR = "indicator", "Indicator (one alert per buy, sell or close)"


class TradeAction(models.TextChoices):
    BUY = "buy", "Buy"
    SELL = "sell", "Sell"


class Recorder(models.Model):
    """A signal source: one TradingView strategy, its webhook and every setting that shapes its orders."""

    StrategyType = StrategyType

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="recorders")
    name = models.CharField(max_length=100)
    strategy_type = models.CharField(
        max_length=16, choices=StrategyType.choices, default=StrategyType.STRATEGY
    )
    symbol = models.CharField(
        max_length=32, help_text="The contract traded: ES, ESZ6, ES1! or CME_MINI:ES1!."
    )
    enabled = models.BooleanField(
        default=True, help_text="Off: alerts are still stored and shown, but nothing is traded."
    )

    # Position sizes (contracts); an alert's own quantity wins over them.
    initial_position_size = models.PositiveIntegerField(default=1)
    add_position_size = models.PositiveIntegerField(default=1, help_text="0 turns adding to a position off.")

    # Take profit: the targets are RecorderTarget rows.
    tp_units = models.CharField(max_length=16, choices=DistanceUnit.choices, default=DistanceUnit.TICKS)

    # Stop loss; an amount of 0 places no stop, leaving exits to the strategy's alerts.
    sl_enabled = models.BooleanField(default=False)
    sl_amount = models.DecimalField(max_digits=12, decimal_places=4, default=0)
    sl_units = models.CharField(max_length=16, choices=StopUnit.choices, default=StopUnit.TICKS)
    sl_type = models.CharField(max_length=16, choices=StopType.choices, default=StopType.FIXED)

    # Average down: a limit order for more contracts at a distance against the entry.
    avg_down_enabled = models.BooleanField(default=False)
    avg_down_amount = models.PositiveIntegerField(default=0, help_text="Contracts to add.")
    avg_down_point = models.DecimalField(max_digits=12, decimal_places=4, default=0, help_text="Distance.")
    avg_down_units = models.CharField(max_length=16, choices=DistanceUnit.choices, default=DistanceUnit.TICKS)

    # Time filters, in the recorder's time zone; a stop before the start crosses midnight.
    time_filter_1_enabled = models.BooleanField(default=False)
    time_filter_1_start = models.TimeField(null=True, blank=True)
    time_filter_1_stop = models.TimeField(null=True, blank=True)
    time_filter_2_enabled = models.BooleanField(default=False)
    time_filter_2_start = models.TimeField(null=True, blank=True)
    time_filter_2_stop = models.TimeField(null=True, blank=True)
    timezone = models.CharField("time zone", max_length=64, default=DEFAULT_TIMEZONE)

    # Filters; 0 turns a limit off.
    direction_filter = models.CharField(
        max_length=8, choices=DirectionFilter.choices, default=DirectionFilter.BOTH
    )
    signal_cooldown = models.PositiveIntegerField(default=0, help_text="Seconds between entries.")
    max_signals_per_session = models.PositiveIntegerField(default=0, help_text="Entries per trading session.")
    max_daily_loss = models.DecimalField(
        max_digits=12, decimal_places=2, default=0, help_text="Dollars of realized loss per session."
    )
    max_contracts_per_trade = models.PositiveIntegerField(default=0)
    signal_delay_nth = models.PositiveIntegerField(default=1, help_text="Act on every Nth entry signal.")
    auto_flat_after_cutoff = models.BooleanField(
        default=False, help_text="Flatten open positions once the time filters' window has closed."
    )
    max_signal_age = models.PositiveIntegerField(
        default=60, help_text="Seconds after which an alert that has not been acted on is stale."
    )

    recording_enabled = models.BooleanField(
        default=True, help_text="Keep this recorder's own virtual position, trades and P&L."
    )
    is_private = models.BooleanField(
        "private", default=True, help_text="Public recorders can be used as a signal source by other users."
    )

    # The webhook secret: kept encrypted so its owner can copy the URL again, and as a SHA-256 digest so
    # the webhook finds the recorder with one indexed lookup.
    webhook_token = EncryptedTextField(editable=False)
    webhook_token_hash = models.CharField(max_length=64, unique=True, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RecorderQuerySet.as_manager()

    class Meta:
        ordering = ["name", "pk"]
        constraints = [
            models.UniqueConstraint(
                models.functions.Lower("name"),
                "owner",
                name="trading_recorder_unique_name_per_owner",
                violation_error_message="You already have a recorder with this name.",
            ),
            models.CheckConstraint(condition=~models.Q(name=""), name="trading_recorder_name_not_empty"),
            models.CheckConstraint(condition=~models.Q(symbol=""), name="trading_recorder_symbol_not_empty"),
            models.CheckConstraint(
                condition=models.Q(strategy_type__in=values_of(StrategyType)),
                name="trading_recorder_strategy_type_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(initial_position_size__gte=1),
                name="trading_recorder_initial_position_size_positive",
                violation_error_message="The initial position size must be at least 1 contract.",
            ),
            models.CheckConstraint(
                condition=models.Q(tp_units__in=values_of(DistanceUnit)),
                name="trading_recorder_tp_units_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(sl_amount__gte=0), name="trading_recorder_sl_amount_not_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(sl_units__in=values_of(StopUnit)), name="trading_recorder_sl_units_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(sl_type__in=values_of(StopType)), name="trading_recorder_sl_type_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(avg_down_point__gte=0), name="trading_recorder_avg_down_point_not_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(avg_down_units__in=values_of(DistanceUnit)),
                name="trading_recorder_avg_down_units_valid",
            ),
            models.CheckConstraint(
                condition=time_filter_valid("time_filter_1"),
                name="trading_recorder_time_filter_1_complete",
                violation_error_message="Time filter 1 is on: give it a start and a different stop time.",
            ),
            models.CheckConstraint(
                condition=time_filter_valid("time_filter_2"),
                name="trading_recorder_time_filter_2_complete",
                violation_error_message="Time filter 2 is on: give it a start and a different stop time.",
            ),
            models.CheckConstraint(
                condition=~models.Q(timezone=""), name="trading_recorder_timezone_not_empty"
            ),
            models.CheckConstraint(
                condition=models.Q(direction_filter__in=values_of(DirectionFilter)),
                name="trading_recorder_direction_filter_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(max_daily_loss__gte=0), name="trading_recorder_max_daily_loss_not_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(signal_delay_nth__gte=1), name="trading_recorder_signal_delay_nth_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(max_signal_age__gte=1), name="trading_recorder_max_signal_age_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(webhook_token_hash__regex=r"^[0-9a-f]{64}$"),  # noqa: S106 - a format
                name="trading_recorder_webhook_token_hash_format",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class TakeProfitTargetBase(models.Model):
    """One take-profit target: a distance from the entry and the contracts it closes."""

    number = models.PositiveSmallIntegerField(help_text="1 for the nearest target.")
    value = models.DecimalField(
        max_digits=12, decimal_places=4, help_text="Distance in the take-profit units."
    )
    trim = models.PositiveIntegerField(
        null=True, blank=True, help_text="Contracts to close; empty: the rest."
    )

    class Meta:
        abstract = True
        ordering = ["number"]

    def __str__(self) -> str:
        trim = "the rest" if self.trim is None else f"{self.trim}"
        return f"TP{self.number}: {self.value.normalize()} ({trim})"

    def as_item(self) -> dict:
        """Return the target as the API writes it: {"value": 8, "trim": 1}."""
        return {"value": self.value, "trim": self.trim}


def target_constraints(parent: str, prefix: str) -> list[models.BaseConstraint]:
    """Return the constraints every take-profit target table carries."""
    return [
        models.UniqueConstraint(
            fields=[parent, "number"],
            name=f"{prefix}_unique_number",
            violation_error_message="Each take-profit target needs its own number.",
        ),
        models.CheckConstraint(
            condition=models.Q(number__gte=1, number__lte=MAX_TP_TARGETS), name=f"{prefix}_number_in_range"
        ),
        models.CheckConstraint(
            condition=models.Q(value__gt=0),
            name=f"{prefix}_value_positive",
            violation_error_message="A take-profit distance must be more than 0.",
        ),
        models.CheckConstraint(
            condition=models.Q(trim__isnull=True) | models.Q(trim__gte=1),
            name=f"{prefix}_trim_positive",
            violation_error_message="A take-profit trim must be at least 1 contract (or empty for the rest).",
        ),
    ]


class RecorderTarget(TakeProfitTargetBase):
    """A take-profit target of a recorder."""

    recorder = models.ForeignKey(Recorder, on_delete=models.CASCADE, related_name="targets")

    class Meta(TakeProfitTargetBase.Meta):
        verbose_name = "take-profit target"
        constraints = target_constraints("recorder", "trading_recordertarget")


class RecorderPosition(models.Model):
    """A recorder's virtual position at its signals' prices, and the counters its filters need."""

    recorder = models.OneToOneField(
        Recorder, on_delete=models.CASCADE, primary_key=True, related_name="virtual_position"
    )
    quantity = models.IntegerField(default=0, help_text="Signed contracts: negative is short.")
    avg_price = models.DecimalField(max_digits=18, decimal_places=8, null=True, blank=True)
    realized_pnl = models.DecimalField(
        max_digits=16, decimal_places=2, default=0, help_text="Since the start."
    )
    # What the recorder's filters know (trading.risk.RiskState), kept with the book: both change under one row
    # lock. signal_position is where signals put the strategy; the book follows it whenever a price is known.
    signal_position = models.IntegerField(default=0)
    last_signal_at = models.DateTimeField(null=True, blank=True)
    signals_this_session = models.PositiveIntegerField(default=0)
    signal_count = models.PositiveIntegerField(default=0)
    session = models.DateField(null=True, blank=True, help_text="Trading day the session counters belong to.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "recorder position"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(quantity=0, avg_price__isnull=True)
                | (~models.Q(quantity=0) & models.Q(avg_price__isnull=False)),
                name="trading_recorderposition_avg_price_iff_open",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.recorder_id}: {self.quantity:+d} @ {self.avg_price or '-'}"


class RecorderTrade(models.Model):
    """One virtual fill of a recorder at its signal's price, with the P&L it realized."""

    Action = TradeAction

    recorder = models.ForeignKey(Recorder, on_delete=models.CASCADE, related_name="trades")
    executed_at = models.DateTimeField()
    session = models.DateField(help_text="CME trading day (a new one starts at 17:00 America/Chicago).")
    action = models.CharField(max_length=4, choices=TradeAction.choices)
    quantity = models.PositiveIntegerField()
    price = models.DecimalField(max_digits=18, decimal_places=8)
    position_after = models.IntegerField()
    avg_price_after = models.DecimalField(max_digits=18, decimal_places=8, null=True, blank=True)
    realized_pnl = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    cumulative_pnl = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    # What caused the fill (the pipeline passes "signal:<id>"); the same source is recorded once.
    source_key = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["executed_at", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(quantity__gte=1), name="trading_recordertrade_quantity_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(action__in=values_of(TradeAction)),
                name="trading_recordertrade_action_valid",
            ),
            models.UniqueConstraint(
                fields=["recorder", "source_key"],
                condition=~models.Q(source_key=""),
                name="trading_recordertrade_unique_source_per_recorder",
            ),
        ]
        indexes = [
            models.Index(fields=["recorder", "session"], name="trading_rtrade_session_idx"),
            models.Index(fields=["recorder", "executed_at"], name="trading_rtrade_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.quantity} @ {self.price.normalize()}"
