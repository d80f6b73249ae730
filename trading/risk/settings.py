"""Risk settings: a recorder's filters (a trader's, after its overrides) and their time windows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, time
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from trading.risk.enums import Direction
from trading.risk.values import aware, whole
from trading.symbols import to_decimal

DEFAULT_TIMEZONE = "America/Chicago"
EN_DASH = "\u2013"


def _parse_time(value: time | str | None, *, name: str) -> time | None:
    if value is None or isinstance(value, time):
        return value.replace(tzinfo=None) if value is not None else None
    text = str(value).strip()
    if not text:
        return None
    try:
        return time.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name} must be a time such as 09:30, not {value!r}.") from None


def _format_time(moment: time) -> str:
    return moment.strftime("%H:%M:%S" if moment.second or moment.microsecond else "%H:%M")


@dataclass(frozen=True)
class TimeWindow:
    """A daily trading window: start inclusive, stop exclusive, crossing midnight when stop < start."""

    enabled: bool = False
    start: time | None = None
    stop: time | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "enabled", bool(self.enabled))
        object.__setattr__(self, "start", _parse_time(self.start, name="A time filter's start"))
        object.__setattr__(self, "stop", _parse_time(self.stop, name="A time filter's stop"))
        if self.enabled:
            if self.start is None or self.stop is None:
                raise ValueError("A time filter that is on needs both a start and a stop time.")
            if self.start == self.stop:
                raise ValueError(
                    f"A time filter's start and stop are both {_format_time(self.start)}: "
                    "make them differ, or turn the filter off to trade all day."
                )

    @property
    def label(self) -> str:
        """Return `09:30-16:00`, joined by an en dash."""
        if self.start is None or self.stop is None:
            return "all day"
        return f"{_format_time(self.start)}{EN_DASH}{_format_time(self.stop)}"

    def contains(self, moment: time) -> bool:
        """Return whether a local wall-clock time falls inside the window (always True when off)."""
        if not self.enabled or self.start is None or self.stop is None:
            return True
        moment = moment.replace(tzinfo=None)
        if self.start < self.stop:
            return self.start <= moment < self.stop
        return moment >= self.start or moment < self.stop


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"Unknown time zone {name!r}: use a name such as America/Chicago.") from None


@dataclass(frozen=True)
class RiskSettings:
    """Every risk filter of a recorder (or of a trader after its overrides); 0 turns a limit off."""

    initial_position_size: int = 1
    add_position_size: int = 1
    time_filter_1: TimeWindow = field(default_factory=TimeWindow)
    time_filter_2: TimeWindow = field(default_factory=TimeWindow)
    timezone: str = DEFAULT_TIMEZONE
    direction_filter: Direction = Direction.BOTH
    signal_cooldown: int = 0  # seconds
    max_signals_per_session: int = 0
    max_daily_loss: Decimal = Decimal(0)  # dollars
    max_contracts_per_trade: int = 0
    signal_delay_nth: int = 1  # act on signals N, 2N, ...; 0 and 1 both mean every signal
    auto_flat_after_cutoff: bool = False

    def __post_init__(self) -> None:
        for name in (
            "initial_position_size",
            "add_position_size",
            "signal_cooldown",
            "max_signals_per_session",
            "max_contracts_per_trade",
            "signal_delay_nth",
        ):
            object.__setattr__(self, name, whole(getattr(self, name), name=name.replace("_", " ")))
        object.__setattr__(self, "signal_delay_nth", max(1, self.signal_delay_nth))
        loss = to_decimal(self.max_daily_loss, name="max daily loss")
        if loss < 0:
            raise ValueError(f"max daily loss cannot be negative ({loss}).")
        object.__setattr__(self, "max_daily_loss", loss)
        object.__setattr__(self, "direction_filter", Direction.parse(self.direction_filter))
        object.__setattr__(self, "auto_flat_after_cutoff", bool(self.auto_flat_after_cutoff))
        for name in ("time_filter_1", "time_filter_2"):
            window = getattr(self, name)
            if not isinstance(window, TimeWindow):
                raise ValueError(f"{name} must be a TimeWindow, not {window!r}.")
        name = (self.timezone or DEFAULT_TIMEZONE).strip()
        _zone(name)
        object.__setattr__(self, "timezone", name)

    @property
    def zone(self) -> ZoneInfo:
        """Return the time zone the windows are read in."""
        return _zone(self.timezone)

    @property
    def windows(self) -> tuple[TimeWindow, ...]:
        """Return the time filters that are on."""
        return tuple(window for window in (self.time_filter_1, self.time_filter_2) if window.enabled)

    def in_trading_window(self, moment: datetime) -> bool:
        """Return whether an aware moment is inside any window that is on (True when none is on)."""
        windows = self.windows
        local = aware(moment, name="moment").astimezone(self.zone).time()
        return not windows or any(window.contains(local) for window in windows)

    def window_label(self) -> str:
        """Return `09:30-16:00 America/Chicago`, or both windows joined by `and`."""
        return " and ".join(window.label for window in self.windows) + f" {self.timezone}"

    def as_fields(self) -> dict[str, Any]:
        """Return the settings under the flat field names of the recorder API."""
        values: dict[str, Any] = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, TimeWindow):
                values[f"{spec.name}_enabled"] = value.enabled
                values[f"{spec.name}_start"] = value.start
                values[f"{spec.name}_stop"] = value.stop
            else:
                values[spec.name] = value
        return values

    @classmethod
    def from_fields(cls, values: Mapping[str, Any]) -> RiskSettings:
        """Build settings from flat field names (a model's); other keys are ignored, None means default."""
        kwargs: dict[str, Any] = {}
        for spec in fields(cls):
            if spec.name.startswith("time_filter_"):
                if isinstance(values.get(spec.name), TimeWindow):
                    kwargs[spec.name] = values[spec.name]
                    continue
                parts = {part: values.get(f"{spec.name}_{part}") for part in ("enabled", "start", "stop")}
                kwargs[spec.name] = TimeWindow(
                    enabled=bool(parts["enabled"]), start=parts["start"], stop=parts["stop"]
                )
            elif values.get(spec.name) is not None:
                kwargs[spec.name] = values[spec.name]
        return cls(**kwargs)


RISK_FIELDS: frozenset[str] = frozenset(RiskSettings().as_fields())


def merge_settings(recorder: RiskSettings, overrides: Mapping[str, Any]) -> RiskSettings:
    """Return the recorder's settings with every override that is not None (or an empty string) applied.

    Keys are the flat names of RISK_FIELDS, or `time_filter_1`/`time_filter_2` as a whole TimeWindow.
    """
    values = recorder.as_fields()
    for key, value in overrides.items():
        if key in ("time_filter_1", "time_filter_2"):
            if value is None:
                continue
            if not isinstance(value, TimeWindow):
                raise ValueError(f"Override {key} must be a TimeWindow, not {value!r}.")
            values.update(
                {f"{key}_enabled": value.enabled, f"{key}_start": value.start, f"{key}_stop": value.stop}
            )
            continue
        if key not in RISK_FIELDS:
            raise ValueError(
                f"{key!r} is not a risk setting; known settings: {', '.join(sorted(RISK_FIELDS))}."
            )
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        values[key] = value
    return RiskSettings.from_fields(values)
