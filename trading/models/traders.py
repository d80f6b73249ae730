"""Traders: a recorder's signals executed on sub-accounts of one broker account, with optional overrides."""

from django.db import models

from trading.models.accounts import BrokerAccount, BrokerSubAccount
from trading.models.choices import DirectionFilter, DistanceUnit, StopType, StopUnit, values_of
from trading.models.recorders import Recorder, TakeProfitTargetBase, target_constraints


class TraderQuerySet(models.QuerySet):
    def owned_by(self, user) -> "TraderQuerySet":
        """Return the traders on one user's broker accounts."""
        return self.filter(account__owner=user)


def _choice_or_blank(field: str, choices: type[models.TextChoices], prefix: str) -> models.CheckConstraint:
    return models.CheckConstraint(
        condition=models.Q(**{f"{field}__in": ["", *values_of(choices)]}), name=f"{prefix}_{field}_valid"
    )


def _start_differs_from_stop(prefix: str, name: str) -> models.CheckConstraint:
    start, stop = f"{prefix}_start", f"{prefix}_stop"
    return models.CheckConstraint(
        condition=models.Q(**{f"{start}__isnull": True})
        | models.Q(**{f"{stop}__isnull": True})
        | ~models.Q(**{start: models.F(stop)}),
        name=name,
        violation_error_message="A time filter's start and stop must differ.",
    )


class Trader(models.Model):
    """Executes one recorder's signals on chosen sub-accounts of a broker account."""

    recorder = models.ForeignKey(Recorder, on_delete=models.CASCADE, related_name="traders")
    account = models.ForeignKey(BrokerAccount, on_delete=models.CASCADE, related_name="traders")
    enabled = models.BooleanField(default=True)

    # Every setting below is an override: empty (NULL, or "" for choices) means the recorder's value.
    initial_position_size = models.PositiveIntegerField(null=True, blank=True)
    add_position_size = models.PositiveIntegerField(null=True, blank=True)

    tp_units = models.CharField(max_length=16, choices=DistanceUnit.choices, blank=True)
    tp_targets_overridden = models.BooleanField(
        default=False, help_text="Use this trader's own take-profit targets (none is allowed) instead."
    )

    sl_enabled = models.BooleanField(null=True, blank=True)
    sl_amount = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    sl_units = models.CharField(max_length=16, choices=StopUnit.choices, blank=True)
    sl_type = models.CharField(max_length=16, choices=StopType.choices, blank=True)

    avg_down_enabled = models.BooleanField(null=True, blank=True)
    avg_down_amount = models.PositiveIntegerField(null=True, blank=True)
    avg_down_point = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    avg_down_units = models.CharField(max_length=16, choices=DistanceUnit.choices, blank=True)

    time_filter_1_enabled = models.BooleanField(null=True, blank=True)
    time_filter_1_start = models.TimeField(null=True, blank=True)
    time_filter_1_stop = models.TimeField(null=True, blank=True)
    time_filter_2_enabled = models.BooleanField(null=True, blank=True)
    time_filter_2_start = models.TimeField(null=True, blank=True)
    time_filter_2_stop = models.TimeField(null=True, blank=True)
    timezone = models.CharField("time zone", max_length=64, blank=True)

    direction_filter = models.CharField(max_length=8, choices=DirectionFilter.choices, blank=True)
    signal_cooldown = models.PositiveIntegerField(null=True, blank=True)
    max_signals_per_session = models.PositiveIntegerField(null=True, blank=True)
    max_daily_loss = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    max_contracts_per_trade = models.PositiveIntegerField(null=True, blank=True)
    signal_delay_nth = models.PositiveIntegerField(null=True, blank=True)
    auto_flat_after_cutoff = models.BooleanField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TraderQuerySet.as_manager()

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["recorder", "account"],
                name="trading_trader_one_per_recorder_and_account",
                violation_error_message="This broker account already follows this recorder.",
            ),
            models.CheckConstraint(
                condition=models.Q(initial_position_size__isnull=True)
                | models.Q(initial_position_size__gte=1),
                name="trading_trader_initial_position_size_positive",
                violation_error_message="The initial position size must be at least 1 contract.",
            ),
            _choice_or_blank("tp_units", DistanceUnit, "trading_trader"),
            models.CheckConstraint(
                condition=models.Q(sl_amount__isnull=True) | models.Q(sl_amount__gte=0),
                name="trading_trader_sl_amount_not_negative",
            ),
            _choice_or_blank("sl_units", StopUnit, "trading_trader"),
            _choice_or_blank("sl_type", StopType, "trading_trader"),
            models.CheckConstraint(
                condition=models.Q(avg_down_point__isnull=True) | models.Q(avg_down_point__gte=0),
                name="trading_trader_avg_down_point_not_negative",
            ),
            _choice_or_blank("avg_down_units", DistanceUnit, "trading_trader"),
            _start_differs_from_stop("time_filter_1", "trading_trader_time_filter_1_start_differs"),
            _start_differs_from_stop("time_filter_2", "trading_trader_time_filter_2_start_differs"),
            _choice_or_blank("direction_filter", DirectionFilter, "trading_trader"),
            models.CheckConstraint(
                condition=models.Q(max_daily_loss__isnull=True) | models.Q(max_daily_loss__gte=0),
                name="trading_trader_max_daily_loss_not_negative",
            ),
            models.CheckConstraint(
                condition=models.Q(signal_delay_nth__isnull=True) | models.Q(signal_delay_nth__gte=1),
                name="trading_trader_signal_delay_nth_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.recorder} on {self.account}"


class TraderTarget(TakeProfitTargetBase):
    """A take-profit target of a trader that overrides its recorder's targets."""

    trader = models.ForeignKey(Trader, on_delete=models.CASCADE, related_name="targets")

    class Meta(TakeProfitTargetBase.Meta):
        verbose_name = "trader take-profit target"
        constraints = target_constraints("trader", "trading_tradertarget")


class TraderSubAccount(models.Model):
    """A sub-account a trader sends orders to, with the multiplier applied to every quantity."""

    trader = models.ForeignKey(Trader, on_delete=models.CASCADE, related_name="subaccount_links")
    subaccount = models.ForeignKey(BrokerSubAccount, on_delete=models.CASCADE, related_name="trader_links")
    multiplier = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["trader", "subaccount__name", "pk"]
        verbose_name = "trader sub-account"
        constraints = [
            models.UniqueConstraint(
                fields=["trader", "subaccount"],
                name="trading_tradersubaccount_one_link_per_subaccount",
                violation_error_message="This sub-account is already linked to the trader.",
            ),
            models.CheckConstraint(
                condition=models.Q(multiplier__gte=1),
                name="trading_tradersubaccount_multiplier_positive",
                violation_error_message="A multiplier must be at least 1.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subaccount} x{self.multiplier}"
