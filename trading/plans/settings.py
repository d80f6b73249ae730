"""Plan settings: a recorder's take-profit targets, stop loss and average-down, by the API's names."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

from trading.plans.enums import StopKind
from trading.plans.values import contract_count
from trading.symbols import OffsetUnit, to_decimal


@dataclass(frozen=True)
class TakeProfitTarget:
    """One take-profit: a distance from the entry (in the plan's units) and the contracts it closes."""

    value: Decimal
    trim: int | None = None  # None: everything still open

    def __post_init__(self) -> None:
        value = to_decimal(self.value, name="take-profit distance")
        if value <= 0:
            raise ValueError(f"A take-profit distance must be more than 0, not {value}.")
        object.__setattr__(self, "value", value)
        if self.trim is not None:
            object.__setattr__(self, "trim", contract_count(self.trim, name="A take-profit's trim"))

    @classmethod
    def parse(cls, item: TakeProfitTarget | Mapping[str, Any]) -> TakeProfitTarget:
        """Return a target from `{"value": 8, "trim": 1}` (the recorder API's form)."""
        if isinstance(item, cls):
            return item
        if not isinstance(item, Mapping) or "value" not in item:
            raise ValueError(f'A take-profit target must look like {{"value": 8, "trim": 1}}, not {item!r}.')
        return cls(value=item["value"], trim=item.get("trim"))


@dataclass(frozen=True)
class PlanSettings:
    """Take-profit, stop loss and average-down settings of a recorder, under the recorder API's names."""

    tp_units: OffsetUnit = OffsetUnit.TICKS
    tp_targets: tuple[TakeProfitTarget, ...] = ()
    sl_enabled: bool = False
    sl_amount: Decimal = Decimal(0)  # 0 places no stop, leaving exits to the strategy's alerts
    sl_units: OffsetUnit = OffsetUnit.TICKS
    sl_type: StopKind = StopKind.FIXED
    avg_down_enabled: bool = False
    avg_down_amount: int = 0  # contracts
    avg_down_point: Decimal = Decimal(0)  # distance from the entry
    avg_down_units: OffsetUnit = OffsetUnit.TICKS

    def __post_init__(self) -> None:
        for name in ("tp_units", "sl_units", "avg_down_units"):
            object.__setattr__(self, name, OffsetUnit.parse(getattr(self, name)))
        for name in ("tp_units", "avg_down_units"):
            if getattr(self, name) is OffsetUnit.DOLLARS:
                label = "Take-profit" if name == "tp_units" else "Average-down"
                raise ValueError(f"{label} distances are in ticks, points or percent, not dollars.")
        targets = self.tp_targets or ()
        if isinstance(targets, Mapping) or not isinstance(targets, Iterable):
            raise ValueError(f"Take-profit targets must be a list, not {targets!r}.")
        object.__setattr__(self, "tp_targets", tuple(TakeProfitTarget.parse(item) for item in targets))
        object.__setattr__(self, "sl_type", StopKind.parse(self.sl_type))
        for name in ("sl_enabled", "avg_down_enabled"):
            object.__setattr__(self, name, bool(getattr(self, name)))
        for name, label in (("sl_amount", "stop loss amount"), ("avg_down_point", "average-down distance")):
            amount = to_decimal(getattr(self, name), name=label)
            if amount < 0:
                raise ValueError(f"The {label} cannot be negative ({amount}).")
            object.__setattr__(self, name, amount)
        amount = contract_count(self.avg_down_amount, name="The average-down quantity", minimum=0)
        object.__setattr__(self, "avg_down_amount", amount)

    @property
    def places_stop(self) -> bool:
        """Return whether a stop loss is placed (on, with an amount above 0)."""
        return self.sl_enabled and self.sl_amount > 0

    def as_fields(self) -> dict[str, Any]:
        """Return the settings under the recorder API's names, targets as `[{"value", "trim"}]`."""
        values = {spec.name: getattr(self, spec.name) for spec in fields(self)}
        values["tp_targets"] = [{"value": target.value, "trim": target.trim} for target in self.tp_targets]
        return values

    @classmethod
    def from_fields(cls, values: Mapping[str, Any]) -> PlanSettings:
        """Build settings from the recorder API's names (a model's fields); other keys are ignored."""
        return cls(**{name: values[name] for name in PLAN_FIELDS if values.get(name) is not None})


PLAN_FIELDS: frozenset[str] = frozenset(spec.name for spec in fields(PlanSettings))


def merge_plan_settings(recorder: PlanSettings, overrides: Mapping[str, Any]) -> PlanSettings:
    """Return the recorder's plan settings with every override that is not None (or empty text) applied."""
    values = recorder.as_fields()
    for key, value in overrides.items():
        if key not in PLAN_FIELDS:
            raise ValueError(
                f"{key!r} is not an order plan setting; known: {', '.join(sorted(PLAN_FIELDS))}."
            )
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        values[key] = value
    return PlanSettings.from_fields(values)
