"""The risk engine: a signal, the settings and the stored state in; a verdict and the state to store out."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal

from trading.risk.enums import Action, Direction, MarketPosition, Move, Side
from trading.risk.sessions import session_key
from trading.risk.settings import RiskSettings
from trading.risk.values import CENT, aware, whole
from trading.symbols import to_decimal


@dataclass(frozen=True)
class SignalInput:
    """A parsed alert as the risk engine sees it."""

    action: Action
    received_at: datetime
    quantity: Decimal | int | None = None  # explicit contracts; 0 is a value (refused), None is "not sent"
    price: Decimal | None = None
    market_position: MarketPosition | None = None
    position_size: Decimal | int | None = None  # the strategy's signed size after its order

    def __post_init__(self) -> None:
        object.__setattr__(self, "action", Action.parse(self.action))
        aware(self.received_at, name="received_at")
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
        object.__setattr__(self, "position", whole(self.position, name="position", minimum=-(10**9)))
        object.__setattr__(self, "realized_pnl_session", to_decimal(self.realized_pnl_session, name="P&L"))
        if self.last_signal_at is not None:
            aware(self.last_signal_at, name="last_signal_at")

    def for_session(self, key: date) -> RiskState:
        """Return this state with the session counters reset when they belong to another trading day."""
        if self.session is not None and self.session != key:
            return replace(self, session=key, signals_this_session=0, realized_pnl_session=Decimal(0))
        return replace(self, session=key)


@dataclass(frozen=True)
class Verdict:
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
    signal: SignalInput, settings: RiskSettings, move: Move, explicit: int | None, multiplier: int
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


def evaluate(
    signal: SignalInput, settings: RiskSettings, state: RiskState, *, multiplier: int = 1
) -> Verdict:
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

    def refuse(reason: str, move: Move | None, new_state: RiskState = state) -> Verdict:
        return Verdict(False, reason, move, 0, 0, 0, position, position, new_state)

    def exit_verdict(quantity: int, notes: tuple[str, ...] = (), new_state: RiskState = state) -> Verdict:
        move = Move.CLOSE if quantity >= abs(position) else Move.REDUCE
        quantity = min(quantity, abs(position))
        after = position - quantity * (side_now.sign if side_now else 0)
        stored = replace(new_state, position=after, last_signal_at=moment)
        return Verdict(True, "", move, quantity, 0, quantity, position, after, stored, notes)

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
            return exit_verdict(explicit)
        return exit_verdict(abs(position))

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
        return exit_verdict(explicit if explicit is not None else settings.add_position_size * multiplier)

    if side_now is None:
        move = Move.OPEN
    elif side_now is target_side:
        move = Move.ADD
    else:
        move = Move.REVERSE

    held = side_now.value if side_now else "flat"

    def refuse_entry(reason: str, new_state: RiskState = state) -> Verdict:
        if move is Move.REVERSE:
            return exit_verdict(abs(position), (f"Closed the {held} position only. {reason}",), new_state)
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
    return Verdict(True, "", move, quantity, quantity, exit_quantity, position, after, stored, notes)


def auto_flat_due(now: datetime, settings: RiskSettings, position: int) -> bool:
    """Return whether a position should be flattened: auto-flat on, a position open, outside every window."""
    return (
        settings.auto_flat_after_cutoff
        and position != 0
        and bool(settings.windows)
        and not settings.in_trading_window(now)
    )
