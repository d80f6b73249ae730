"""Risk filters: whether a signal becomes a trade, how many contracts, and what kind of move it is.

Pure functions on dataclasses: no ORM, no I/O, no settings. The Django layer maps Recorder and Trader fields
(the names of /api/recorders/) onto RiskSettings and the stored counters onto RiskState.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from trading.symbols import ContractInfo, to_decimal

__all__ = [
    "CME_TIMEZONE",
    "DEFAULT_TIMEZONE",
    "RISK_FIELDS",
    "SESSION_ROLL",
    "Action",
    "Decision",
    "Direction",
    "MarketPosition",
    "Move",
    "RecorderBook",
    "RiskSettings",
    "RiskState",
    "Side",
    "Signal",
    "TimeWindow",
    "auto_flat_due",
    "evaluate",
    "merge_settings",
    "session_key",
    "session_range",
    "session_start",
]

DEFAULT_TIMEZONE = "America/Chicago"
CME_TIMEZONE = ZoneInfo("America/Chicago")
SESSION_ROLL = time(17, 0)  # CME's trading day starts at 17:00 Chicago time, the evening before its date
CENT = Decimal("0.01")
EN_DASH = "\u2013"
AVERAGE_PRICE_PLACES = Decimal("1e-8")


class Action(StrEnum):
    """What a signal asks for."""

    BUY = "buy"
    SELL = "sell"
    CLOSE = "close"

    @classmethod
    def parse(cls, value: Action | str) -> Action:
        """Return the action for `buy`/`long`, `sell`/`short` or `close`/`exit`/`flat` (any case)."""
        if isinstance(value, cls):
            return value
        action = _ACTION_ALIASES.get(str(value).strip().lower())
        if action is None:
            raise ValueError(f"Unknown action {value!r}: use buy, sell or close.")
        return action


_ACTION_ALIASES = {
    "buy": Action.BUY,
    "long": Action.BUY,
    "sell": Action.SELL,
    "short": Action.SELL,
    "close": Action.CLOSE,
    "exit": Action.CLOSE,
    "flat": Action.CLOSE,
    "flatten": Action.CLOSE,
}


class MarketPosition(StrEnum):
    """The strategy's position after its order, as TradingView reports it."""

    LONG = "long"
    SHORT = "short"
    FLAT = "flat"

    @classmethod
    def parse(cls, value: MarketPosition | str | None) -> MarketPosition | None:
        """Return the market position for `long`/`short`/`flat`, None for an empty value."""
        if value is None or isinstance(value, cls):
            return value
        text = str(value).strip().lower()
        if not text:
            return None
        try:
            return cls(text)
        except ValueError:
            raise ValueError(f"Unknown market position {value!r}: use long, short or flat.") from None


class Direction(StrEnum):
    """Which positions a direction filter lets a signal open."""

    BOTH = "both"
    LONG = "long"
    SHORT = "short"

    @classmethod
    def parse(cls, value: Direction | str) -> Direction:
        """Return the direction for `both`, `long`/`long_only` or `short`/`short_only`."""
        if isinstance(value, cls):
            return value
        text = str(value).strip().lower().replace(" ", "_").replace("-", "_")
        text = {"long_only": "long", "short_only": "short", "": "both"}.get(text, text)
        try:
            return cls(text)
        except ValueError:
            raise ValueError(f"Unknown direction filter {value!r}: use both, long or short.") from None


class Side(StrEnum):
    """The side of a position."""

    LONG = "long"
    SHORT = "short"

    @property
    def sign(self) -> int:
        """Return +1 for long, -1 for short."""
        return 1 if self is Side.LONG else -1

    @property
    def opposite(self) -> Side:
        """Return the other side."""
        return Side.SHORT if self is Side.LONG else Side.LONG

    @classmethod
    def of(cls, position: int) -> Side | None:
        """Return the side of a signed position, None when flat."""
        if position > 0:
            return cls.LONG
        if position < 0:
            return cls.SHORT
        return None


class Move(StrEnum):
    """The kind of change a decision makes to a position."""

    OPEN = "open"
    ADD = "add"
    REDUCE = "reduce"
    CLOSE = "close"
    REVERSE = "reverse"


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


def _whole(value: Any, *, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number, not {value!r}.")
    number = to_decimal(value, name=name)
    if number != number.to_integral_value():
        raise ValueError(f"{name} must be a whole number, not {value}.")
    if number < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {number}.")
    return int(number)


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
            object.__setattr__(self, name, _whole(getattr(self, name), name=name.replace("_", " ")))
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
        local = _aware(moment, name="moment").astimezone(self.zone).time()
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


def _aware(moment: datetime, *, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, not {moment!r}.")
    return moment


def _roll(day: date) -> datetime:
    # In UTC: Python subtracts and compares two datetimes sharing one ZoneInfo by wall clock, which is
    # wrong across a daylight-saving change.
    return datetime.combine(day, SESSION_ROLL, tzinfo=CME_TIMEZONE).astimezone(UTC)


def session_start(moment: datetime) -> datetime:
    """Return when the CME trading session holding `moment` began: 17:00 America/Chicago, in UTC."""
    local = _aware(moment, name="moment").astimezone(CME_TIMEZONE)
    day = local.date() if local.time() >= SESSION_ROLL else local.date() - timedelta(days=1)
    return _roll(day)


def session_key(moment: datetime) -> date:
    """Return the trading day of `moment`: from 17:00 Chicago on, the next calendar day."""
    return session_start(moment).astimezone(CME_TIMEZONE).date() + timedelta(days=1)


def session_range(key: date) -> tuple[datetime, datetime]:
    """Return the start (inclusive) and end (exclusive) of a trading day's session, in UTC."""
    return _roll(key - timedelta(days=1)), _roll(key)


@dataclass(frozen=True)
class Signal:
    """A parsed alert as the risk engine sees it."""

    action: Action
    received_at: datetime
    quantity: Decimal | int | None = None  # explicit contracts; 0 is a value (refused), None is "not sent"
    price: Decimal | None = None
    market_position: MarketPosition | None = None
    position_size: Decimal | int | None = None  # the strategy's signed size after its order

    def __post_init__(self) -> None:
        object.__setattr__(self, "action", Action.parse(self.action))
        _aware(self.received_at, name="received_at")
        object.__setattr__(self, "market_position", MarketPosition.parse(self.market_position))
        for name in ("quantity", "price", "position_size"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, to_decimal(value, name=name))

    @property
    def target(self) -> MarketPosition:
        """Return the position the strategy wants after this signal."""
        if self.action is Action.CLOSE:
            return MarketPosition.FLAT
        if self.market_position is not None:
            return self.market_position
        if self.position_size is not None:
            if self.position_size > 0:
                return MarketPosition.LONG
            if self.position_size < 0:
                return MarketPosition.SHORT
            return MarketPosition.FLAT
        return MarketPosition.LONG if self.action is Action.BUY else MarketPosition.SHORT


@dataclass(frozen=True)
class RiskState:
    """What the filters need to know about the past; `session` None means the counters are current."""

    position: int = 0  # signed contracts
    last_signal_at: datetime | None = None  # the last signal that was allowed
    signals_this_session: int = 0  # entries allowed this session
    realized_pnl_session: Decimal = Decimal(0)
    signal_count: int = 0  # entry signals counted for every-Nth, never reset
    session: date | None = None  # trading day the session counters belong to

    def __post_init__(self) -> None:
        object.__setattr__(self, "position", _whole(self.position, name="position", minimum=-(10**9)))
        object.__setattr__(self, "realized_pnl_session", to_decimal(self.realized_pnl_session, name="P&L"))
        if self.last_signal_at is not None:
            _aware(self.last_signal_at, name="last_signal_at")

    def for_session(self, key: date) -> RiskState:
        """Return this state with the session counters reset when they belong to another trading day."""
        if self.session is not None and self.session != key:
            return replace(self, session=key, signals_this_session=0, realized_pnl_session=Decimal(0))
        return replace(self, session=key)


@dataclass(frozen=True)
class Decision:
    """The verdict on a signal: allowed or refused with one reason, the quantities, the state to store."""

    allowed: bool
    reason: str  # empty when allowed
    move: Move | None
    quantity: int  # contracts entered (open, add, reverse) or exited (close, reduce); 0 when refused
    entry_quantity: int
    exit_quantity: int
    position_before: int
    position_after: int  # the intended position once the orders fill
    state: RiskState  # what to store after this signal, allowed or not
    notes: tuple[str, ...] = ()  # adjustments a person should see, e.g. a capped quantity

    @property
    def entry_side(self) -> Side | None:
        """Return the side entered (open, add, reverse), None otherwise."""
        return Side.of(self.position_after) if self.entry_quantity else None

    @property
    def exit_side(self) -> Side | None:
        """Return the side of the position being closed or reduced, None otherwise."""
        return Side.of(self.position_before) if self.exit_quantity else None


def _money(amount: Decimal) -> str:
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount).quantize(CENT, rounding=ROUND_HALF_UP):,}"


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def _entry_size(
    signal: Signal, settings: RiskSettings, move: Move, explicit: int | None, multiplier: int
) -> tuple[int, str | None]:
    """Return (contracts, refusal) for the entering part of a move."""
    if move is Move.ADD:
        if explicit is not None:
            return explicit, None
        if settings.add_position_size == 0:
            return 0, "Adding to a position is off: the add position size is 0."
        return settings.add_position_size * multiplier, None
    if explicit is not None:
        if move is Move.REVERSE and signal.position_size:
            # TradingView's order contracts for a reversal include the contracts that close the old side;
            # the strategy's resulting size is the size of the new position.
            return int(abs(signal.position_size)) * multiplier, None
        return explicit, None
    if settings.initial_position_size == 0:
        return 0, "The initial position size is 0: set a position size or send a quantity with the alert."
    return settings.initial_position_size * multiplier, None


def _direction_refusal(settings: RiskSettings, move: Move, side: Side) -> str | None:
    allowed = settings.direction_filter
    if allowed is Direction.BOTH or allowed.value == side.value:
        return None
    verb = "buy" if side is Side.LONG else "sell"
    only = "Long-only" if allowed is Direction.LONG else "Short-only"
    if move is Move.ADD:
        return f"{only}: adding to a {side.value} position is refused."
    return f"{only}: a {verb} that would open a {side.value} position is refused."


def evaluate(signal: Signal, settings: RiskSettings, state: RiskState, *, multiplier: int = 1) -> Decision:
    """Decide what a signal does to one position; `multiplier` scales every size (a sub-account's multiplier).

    Closes and reductions pass every filter because they lower risk; a close while flat is refused, never
    turned into a new position. Filters on entries, in order: trading window, direction, daily loss, entries
    per session, cooldown, every-Nth; then max contracts caps the quantity. A reversal whose new side is
    refused still closes the old side.
    """
    if isinstance(multiplier, bool) or not isinstance(multiplier, int) or multiplier < 1:
        raise ValueError(f"multiplier must be a whole number of at least 1, not {multiplier!r}.")
    moment = signal.received_at
    state = state.for_session(session_key(moment))
    position = state.position
    side_now = Side.of(position)

    def refuse(reason: str, move: Move | None, new_state: RiskState = state) -> Decision:
        return Decision(False, reason, move, 0, 0, 0, position, position, new_state)

    def exit_decision(quantity: int, notes: tuple[str, ...] = (), new_state: RiskState = state) -> Decision:
        move = Move.CLOSE if quantity >= abs(position) else Move.REDUCE
        quantity = min(quantity, abs(position))
        after = position - quantity * (side_now.sign if side_now else 0)
        stored = replace(new_state, position=after, last_signal_at=moment)
        return Decision(True, "", move, quantity, 0, quantity, position, after, stored, notes)

    explicit: int | None = None
    if signal.quantity is not None:
        sent = signal.quantity
        if sent <= 0 or sent != sent.to_integral_value():
            return refuse(
                f"Quantity must be a positive whole number of contracts; the alert sent {sent}.", None
            )
        explicit = int(sent) * multiplier
    if signal.position_size is not None and signal.position_size != signal.position_size.to_integral_value():
        return refuse(
            f"Position size must be a whole number of contracts; the alert sent {signal.position_size}.", None
        )

    target = signal.target
    if target is MarketPosition.FLAT:
        if side_now is None:
            return refuse("Nothing to close: the position is already flat.", Move.CLOSE)
        # Only an explicit close may be partial; a strategy that reports flat wants no position left.
        if signal.action is Action.CLOSE and explicit is not None:
            return exit_decision(explicit)
        return exit_decision(abs(position))

    action_side = Side.LONG if signal.action is Action.BUY else Side.SHORT
    target_side = Side.LONG if target is MarketPosition.LONG else Side.SHORT
    if action_side is not target_side:
        # The strategy stays on target_side after an order against it: a partial exit.
        if side_now is None:
            return refuse("Nothing to reduce: the position is already flat.", Move.REDUCE)
        if side_now is not target_side:
            return refuse(
                f"The strategy stays {target_side.value} after this {signal.action.value}, but this position "
                f"is {side_now.value}: nothing was done. Check that the account matches the strategy.",
                Move.REDUCE,
            )
        if explicit is None and settings.add_position_size == 0:
            return refuse(
                "A partial exit needs a quantity: send contracts with the alert or set an add position size.",
                Move.REDUCE,
            )
        return exit_decision(explicit if explicit is not None else settings.add_position_size * multiplier)

    if side_now is None:
        move = Move.OPEN
    elif side_now is target_side:
        move = Move.ADD
    else:
        move = Move.REVERSE

    held = side_now.value if side_now else "flat"

    def refuse_entry(reason: str, new_state: RiskState = state) -> Decision:
        if move is Move.REVERSE:
            return exit_decision(abs(position), (f"Closed the {held} position only. {reason}",), new_state)
        return refuse(reason, move, new_state)

    quantity, size_refusal = _entry_size(signal, settings, move, explicit, multiplier)
    if size_refusal:
        return refuse_entry(size_refusal)
    if not settings.in_trading_window(moment):
        plural = "s" if len(settings.windows) > 1 else ""
        return refuse_entry(f"Outside trading window{plural} {settings.window_label()}.")
    if direction_refusal := _direction_refusal(settings, move, target_side):
        return refuse_entry(direction_refusal)
    limit = settings.max_daily_loss
    if limit > 0 and state.realized_pnl_session <= -limit:
        return refuse_entry(
            f"Daily loss limit reached: this session's realized P&L is {_money(state.realized_pnl_session)} "
            f"against a limit of {_money(limit)}. Entries resume at the next session (17:00 America/Chicago)."
        )
    cap = settings.max_signals_per_session
    if cap and state.signals_this_session >= cap:
        return refuse_entry(
            f"Session limit reached: {state.signals_this_session} of {cap} entries taken this session. "
            "Entries resume at the next session (17:00 America/Chicago)."
        )
    cooldown = settings.signal_cooldown
    if cooldown and state.last_signal_at is not None:
        elapsed = (moment.astimezone(UTC) - state.last_signal_at.astimezone(UTC)).total_seconds()
        if elapsed < cooldown:
            return refuse_entry(
                f"Cooldown: the last signal was {max(0, int(elapsed))} s ago; the cooldown is {cooldown} s."
            )
    counted = replace(state, signal_count=state.signal_count + 1)
    nth = settings.signal_delay_nth
    if counted.signal_count % nth:
        next_acted = (counted.signal_count // nth + 1) * nth
        return refuse_entry(
            f"Only every {_ordinal(nth)} signal is acted on: this was signal {counted.signal_count}, "
            f"the next one acted on is signal {next_acted}.",
            counted,
        )

    notes: tuple[str, ...] = ()
    max_contracts = settings.max_contracts_per_trade
    if max_contracts and quantity > max_contracts:
        notes = (f"Quantity {quantity} capped to {max_contracts} by max contracts per trade.",)
        quantity = max_contracts
    exit_quantity = abs(position) if move is Move.REVERSE else 0
    after = (0 if move is Move.REVERSE else position) + quantity * target_side.sign
    stored = replace(
        counted, position=after, last_signal_at=moment, signals_this_session=counted.signals_this_session + 1
    )
    return Decision(True, "", move, quantity, quantity, exit_quantity, position, after, stored, notes)


def auto_flat_due(now: datetime, settings: RiskSettings, position: int) -> bool:
    """Return whether a position should be flattened: auto-flat on, a position open, outside every window."""
    return (
        settings.auto_flat_after_cutoff
        and position != 0
        and bool(settings.windows)
        and not settings.in_trading_window(now)
    )


@dataclass(frozen=True)
class RecorderBook:
    """A recorder's virtual position: signed contracts, average price and cumulative realized P&L."""

    position: int = 0
    avg_price: Decimal | None = None  # None when flat
    realized_pnl: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "position", _whole(self.position, name="position", minimum=-(10**9)))
        object.__setattr__(self, "realized_pnl", to_decimal(self.realized_pnl, name="realized P&L"))
        if self.position == 0:
            object.__setattr__(self, "avg_price", None)
        elif self.avg_price is None:
            raise ValueError("A recorder book with an open position needs its average price.")
        else:
            object.__setattr__(self, "avg_price", to_decimal(self.avg_price, name="average price"))

    def fill(self, quantity: int, price: Decimal, contract: ContractInfo) -> tuple[RecorderBook, Decimal]:
        """Apply a signed fill (+ bought, - sold) at `price`; return the new book and dollars realized."""
        quantity = _whole(quantity, name="fill quantity", minimum=-(10**9))
        price = to_decimal(price, name="fill price")
        if quantity == 0:
            return self, Decimal("0.00")
        position, average = self.position, self.avg_price
        if position == 0 or (position > 0) == (quantity > 0):
            new_position = position + quantity
            cost = (average or Decimal(0)) * abs(position) + price * abs(quantity)
            new_average = (cost / abs(new_position)).quantize(AVERAGE_PRICE_PLACES, rounding=ROUND_HALF_UP)
            return replace(self, position=new_position, avg_price=new_average), Decimal("0.00")
        assert average is not None  # noqa: S101 - __post_init__ guarantees it for an open position
        closed = min(abs(quantity), abs(position))
        direction = 1 if position > 0 else -1
        realized = ((price - average) * closed * direction * contract.point_value).quantize(
            CENT, rounding=ROUND_HALF_UP
        )
        new_position = position + quantity
        if new_position == 0:
            new_average = None
        elif (new_position > 0) == (position > 0):
            new_average = average
        else:
            new_average = price  # the fill flipped the position: the remainder opened at this price
        book = RecorderBook(new_position, new_average, (self.realized_pnl + realized).quantize(CENT))
        return book, realized

    def apply(
        self, decision: Decision, price: Decimal, contract: ContractInfo
    ) -> tuple[RecorderBook, Decimal]:
        """Fill an allowed decision at `price` (the signal's); return the new book and dollars realized."""
        if not decision.allowed:
            return self, Decimal("0.00")
        return self.fill(decision.position_after - decision.position_before, price, contract)

    def unrealized_pnl(self, price: Decimal, contract: ContractInfo) -> Decimal:
        """Return the open position's P&L in dollars at `price`."""
        if self.position == 0 or self.avg_price is None:
            return Decimal("0.00")
        change = to_decimal(price, name="price") - self.avg_price
        return (change * self.position * contract.point_value).quantize(CENT, rounding=ROUND_HALF_UP)
