"""The risk engine: every filter at its edges, CME sessions across daylight saving, the recorder's book."""

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from trading.risk import (
    RISK_FIELDS,
    Action,
    Direction,
    MarketPosition,
    Move,
    RecorderBook,
    RiskSettings,
    RiskState,
    Side,
    SignalInput,
    TimeWindow,
    Verdict,
    auto_flat_due,
    evaluate,
    merge_settings,
    session_key,
    session_range,
    session_start,
)
from trading.symbols import CONTRACTS

CHICAGO = ZoneInfo("America/Chicago")
NEW_YORK = ZoneInfo("America/New_York")
TUESDAY_10AM = datetime(2026, 3, 10, 10, 0, tzinfo=CHICAGO)
REGULAR_HOURS = TimeWindow(enabled=True, start=time(9, 30), stop=time(16, 0))
OVERNIGHT = TimeWindow(enabled=True, start=time(18, 0), stop=time(2, 0))


def chicago(*args: int) -> datetime:
    return datetime(*args, tzinfo=CHICAGO)  # type: ignore[misc]


def decide(
    action: str = "buy",
    when: datetime = TUESDAY_10AM,
    settings: RiskSettings | None = None,
    state: RiskState | None = None,
    multiplier: int = 1,
    **signal_fields: object,
) -> Verdict:
    signal = SignalInput(action=action, received_at=when, **signal_fields)  # type: ignore[arg-type]
    return evaluate(signal, settings or RiskSettings(), state or RiskState(), multiplier=multiplier)


# Moves and quantities


def test_a_buy_while_flat_opens_a_long_of_the_initial_size() -> None:
    verdict = decide("buy", settings=RiskSettings(initial_position_size=2))
    assert verdict.allowed
    assert (verdict.move, verdict.quantity, verdict.position_after) == (Move.OPEN, 2, 2)
    assert verdict.entry_side is Side.LONG
    assert verdict.reason == ""


def test_a_sell_while_flat_opens_a_short() -> None:
    verdict = decide("short")
    assert (verdict.move, verdict.position_after, verdict.entry_side) == (Move.OPEN, -1, Side.SHORT)


def test_an_explicit_quantity_replaces_the_initial_size_and_is_multiplied() -> None:
    verdict = decide("buy", quantity=3, settings=RiskSettings(initial_position_size=1), multiplier=2)
    assert (verdict.quantity, verdict.position_after) == (6, 6)


def test_a_buy_while_long_adds_the_add_size() -> None:
    verdict = decide("buy", state=RiskState(position=2), settings=RiskSettings(add_position_size=3))
    assert (verdict.move, verdict.quantity, verdict.position_after) == (Move.ADD, 3, 5)


def test_adding_is_refused_when_the_add_size_is_zero() -> None:
    verdict = decide("buy", state=RiskState(position=2), settings=RiskSettings(add_position_size=0))
    assert not verdict.allowed
    assert verdict.reason == "Adding to a position is off: the add position size is 0."


def test_an_entry_is_refused_when_the_initial_size_is_zero_and_no_quantity_is_sent() -> None:
    verdict = decide("buy", settings=RiskSettings(initial_position_size=0))
    assert not verdict.allowed
    assert "initial position size is 0" in verdict.reason


def test_a_sell_while_long_closes_the_long_then_opens_a_short() -> None:
    verdict = decide("sell", state=RiskState(position=2), settings=RiskSettings(initial_position_size=1))
    assert verdict.move is Move.REVERSE
    assert (verdict.exit_quantity, verdict.entry_quantity, verdict.position_after) == (2, 1, -1)
    assert (verdict.exit_side, verdict.entry_side) == (Side.LONG, Side.SHORT)


def test_a_reversal_opens_the_strategys_new_size_not_tradingviews_order_contracts() -> None:
    # TradingView reports 2 contracts for a 1-lot reversal: 1 closes the long, 1 opens the short.
    verdict = decide(
        "sell", quantity=2, position_size=-1, market_position="short", state=RiskState(position=1)
    )
    assert (verdict.move, verdict.exit_quantity, verdict.entry_quantity) == (Move.REVERSE, 1, 1)


def test_a_partial_exit_reduces_a_long_the_strategy_still_holds() -> None:
    verdict = decide("sell", quantity=1, market_position="long", position_size=2, state=RiskState(position=3))
    assert (verdict.move, verdict.exit_quantity, verdict.position_after) == (Move.REDUCE, 1, 2)
    assert verdict.exit_side is Side.LONG


def test_a_partial_exit_larger_than_the_position_closes_it_and_never_flips_it() -> None:
    verdict = decide("buy", quantity=5, market_position="short", state=RiskState(position=-3))
    assert (verdict.move, verdict.exit_quantity, verdict.position_after) == (Move.CLOSE, 3, 0)


def test_a_partial_exit_against_a_position_on_the_other_side_is_refused() -> None:
    verdict = decide("sell", quantity=1, market_position="long", state=RiskState(position=-2))
    assert not verdict.allowed
    assert "this position is short" in verdict.reason
    assert verdict.position_after == -2


def test_a_close_closes_the_whole_position() -> None:
    verdict = decide("close", state=RiskState(position=-4))
    assert verdict.allowed
    assert (verdict.move, verdict.quantity, verdict.position_after) == (Move.CLOSE, 4, 0)


def test_a_close_with_a_quantity_reduces_by_that_many() -> None:
    verdict = decide("exit", quantity=1, state=RiskState(position=3))
    assert (verdict.move, verdict.quantity, verdict.position_after) == (Move.REDUCE, 1, 2)


def test_market_position_flat_turns_a_buy_into_a_close_of_the_short() -> None:
    verdict = decide("buy", quantity=1, market_position="flat", state=RiskState(position=-2))
    assert (verdict.move, verdict.quantity, verdict.position_after) == (Move.CLOSE, 2, 0)


@pytest.mark.parametrize(
    "signal_fields",
    [
        {"action": "close"},
        {"action": "flat"},
        {"action": "exit", "quantity": 1},
        {"action": "sell", "market_position": "flat"},
        {"action": "buy", "position_size": 0},
    ],
)
def test_a_close_while_flat_is_refused_and_never_becomes_a_position(signal_fields: dict) -> None:
    verdict = decide(**signal_fields)
    assert not verdict.allowed
    assert verdict.reason == "Nothing to close: the position is already flat."
    assert (verdict.quantity, verdict.position_after, verdict.state.position) == (0, 0, 0)


def test_a_partial_exit_while_flat_is_refused() -> None:
    verdict = decide("sell", quantity=1, market_position="long")
    assert not verdict.allowed
    assert verdict.reason == "Nothing to reduce: the position is already flat."


@pytest.mark.parametrize("quantity", [0, Decimal(0), -1, Decimal("1.5"), "0"])
def test_a_quantity_of_zero_negative_or_fractional_is_refused_not_treated_as_unset(quantity: object) -> None:
    verdict = decide("buy", quantity=quantity)
    assert not verdict.allowed
    assert verdict.reason.startswith("Quantity must be a positive whole number of contracts")
    assert verdict.position_after == 0


def test_a_close_with_quantity_zero_is_refused_too() -> None:
    verdict = decide("close", quantity=0, state=RiskState(position=2))
    assert not verdict.allowed
    assert verdict.state.position == 2


def test_max_contracts_caps_the_quantity_after_the_multiplier() -> None:
    verdict = decide("buy", quantity=2, multiplier=3, settings=RiskSettings(max_contracts_per_trade=4))
    assert (verdict.quantity, verdict.position_after) == (4, 4)
    assert verdict.notes == ("Quantity 6 capped to 4 by max contracts per trade.",)


def test_max_contracts_never_caps_the_closing_side_of_a_reversal() -> None:
    verdict = decide("sell", state=RiskState(position=6), settings=RiskSettings(max_contracts_per_trade=2))
    assert (verdict.exit_quantity, verdict.entry_quantity, verdict.position_after) == (6, 1, -1)


def test_a_refused_signal_changes_nothing_that_is_stored_but_its_session() -> None:
    state = RiskState(position=1, last_signal_at=TUESDAY_10AM - timedelta(hours=1), signals_this_session=1)
    verdict = decide("buy", state=state, settings=RiskSettings(add_position_size=0))
    assert verdict.state == replace(state, session=date(2026, 3, 10))


# Time windows


@pytest.mark.parametrize(
    ("moment", "allowed"),
    [
        (chicago(2026, 3, 10, 9, 29, 59), False),
        (chicago(2026, 3, 10, 9, 30), True),
        (chicago(2026, 3, 10, 15, 59, 59, 999999), True),
        (chicago(2026, 3, 10, 16, 0), False),
        (datetime(2026, 3, 10, 14, 30, tzinfo=UTC), True),  # 09:30 CDT
        (datetime(2026, 3, 10, 14, 29, tzinfo=UTC), False),
        (datetime(2026, 3, 6, 15, 30, tzinfo=UTC), True),  # 09:30 CST, before the March change
        (datetime(2026, 3, 6, 14, 30, tzinfo=UTC), False),  # 08:30 CST
    ],
)
def test_the_window_includes_its_start_and_excludes_its_stop(moment: datetime, allowed: bool) -> None:
    verdict = decide("buy", when=moment, settings=RiskSettings(time_filter_1=REGULAR_HOURS))
    assert verdict.allowed is allowed
    if not allowed:
        assert verdict.reason == "Outside trading window 09:30\u201316:00 America/Chicago."


@pytest.mark.parametrize(
    ("hour", "minute", "allowed"),
    [
        (17, 59, False),
        (18, 0, True),
        (23, 59, True),
        (0, 0, True),
        (1, 59, True),
        (2, 0, False),
        (12, 0, False),
    ],
)
def test_a_window_can_cross_midnight(hour: int, minute: int, allowed: bool) -> None:
    moment = chicago(2026, 3, 10, hour, minute)
    assert decide("buy", when=moment, settings=RiskSettings(time_filter_1=OVERNIGHT)).allowed is allowed


def test_two_windows_allow_a_signal_in_either_and_name_both_when_refusing() -> None:
    settings = RiskSettings(
        time_filter_1=TimeWindow(True, time(8, 30), time(11, 0)),
        time_filter_2=TimeWindow(True, time(13, 0), time(15, 0)),
    )
    assert decide("buy", when=chicago(2026, 3, 10, 9), settings=settings).allowed
    assert decide("buy", when=chicago(2026, 3, 10, 14), settings=settings).allowed
    refused = decide("buy", when=chicago(2026, 3, 10, 12), settings=settings)
    assert refused.reason == "Outside trading windows 08:30\u201311:00 and 13:00\u201315:00 America/Chicago."


def test_a_disabled_window_does_not_filter() -> None:
    settings = RiskSettings(time_filter_1=replace(REGULAR_HOURS, enabled=False))
    assert decide("buy", when=chicago(2026, 3, 10, 3), settings=settings).allowed


def test_the_window_is_read_in_the_settings_time_zone() -> None:
    settings = RiskSettings(time_filter_1=REGULAR_HOURS, timezone="America/New_York")
    assert decide("buy", when=chicago(2026, 3, 10, 8, 30), settings=settings).allowed
    refused = decide("buy", when=chicago(2026, 3, 10, 15, 0), settings=settings)
    assert refused.reason == "Outside trading window 09:30\u201316:00 America/New_York."


def test_closing_outside_the_window_is_allowed_because_it_lowers_risk() -> None:
    settings = RiskSettings(time_filter_1=REGULAR_HOURS)
    verdict = decide("close", when=chicago(2026, 3, 10, 20), settings=settings, state=RiskState(position=2))
    assert verdict.allowed
    assert verdict.move is Move.CLOSE


def test_a_reversal_outside_the_window_only_closes_the_old_side() -> None:
    settings = RiskSettings(time_filter_1=REGULAR_HOURS)
    verdict = decide("sell", when=chicago(2026, 3, 10, 20), settings=settings, state=RiskState(position=2))
    assert verdict.allowed
    assert (verdict.move, verdict.exit_quantity, verdict.entry_quantity, verdict.position_after) == (
        Move.CLOSE,
        2,
        0,
        0,
    )
    assert verdict.notes[0].startswith("Closed the long position only. Outside trading window")


def test_a_window_with_equal_start_and_stop_or_missing_times_is_refused() -> None:
    with pytest.raises(ValueError, match="make them differ"):
        TimeWindow(True, time(9, 30), time(9, 30))
    with pytest.raises(ValueError, match="needs both a start and a stop"):
        TimeWindow(True, time(9, 30), None)
    assert TimeWindow(False, None, None).contains(time(3)) is True
    assert TimeWindow(True, "09:30", "16:00") == REGULAR_HOURS


# Direction filter


def test_long_only_refuses_a_sell_that_would_open_a_short() -> None:
    verdict = decide("sell", settings=RiskSettings(direction_filter="long"))
    assert not verdict.allowed
    assert verdict.reason == "Long-only: a sell that would open a short position is refused."


def test_long_only_lets_a_sell_close_a_long() -> None:
    verdict = decide("sell", state=RiskState(position=2), settings=RiskSettings(direction_filter="long_only"))
    assert verdict.allowed
    assert (verdict.move, verdict.position_after) == (Move.CLOSE, 0)
    assert "Long-only" in verdict.notes[0]


def test_long_only_still_opens_longs_and_short_only_refuses_them() -> None:
    assert decide("buy", settings=RiskSettings(direction_filter=Direction.LONG)).allowed
    refused = decide("buy", settings=RiskSettings(direction_filter="short"))
    assert refused.reason == "Short-only: a buy that would open a long position is refused."


def test_long_only_refuses_adding_to_a_short_but_allows_covering_it() -> None:
    settings = RiskSettings(direction_filter="long")
    assert decide("sell", state=RiskState(position=-1), settings=settings).reason == (
        "Long-only: adding to a short position is refused."
    )
    assert decide("close", state=RiskState(position=-1), settings=settings).allowed


# Daily loss, session limit, cooldown, every Nth


def test_the_daily_loss_limit_refuses_entries_once_the_loss_reaches_it() -> None:
    settings = RiskSettings(max_daily_loss=Decimal(500))
    at_limit = decide("buy", settings=settings, state=RiskState(realized_pnl_session=Decimal("-500.00")))
    assert not at_limit.allowed
    assert at_limit.reason.startswith("Daily loss limit reached: this session's realized P&L is -$500.00")
    just_inside = decide("buy", settings=settings, state=RiskState(realized_pnl_session=Decimal("-499.99")))
    assert just_inside.allowed


def test_the_daily_loss_limit_still_lets_a_position_be_closed() -> None:
    state = RiskState(position=1, realized_pnl_session=Decimal(-900))
    assert decide("close", settings=RiskSettings(max_daily_loss=Decimal(500)), state=state).allowed


def test_the_daily_loss_of_yesterdays_session_does_not_block_today() -> None:
    state = RiskState(realized_pnl_session=Decimal(-900), session=date(2026, 3, 9))
    verdict = decide("buy", settings=RiskSettings(max_daily_loss=Decimal(500)), state=state)
    assert verdict.allowed
    assert verdict.state.realized_pnl_session == 0
    assert verdict.state.session == date(2026, 3, 10)


def test_the_session_limit_counts_entries_and_resets_at_the_session_roll() -> None:
    settings = RiskSettings(max_signals_per_session=2)
    state = RiskState(signals_this_session=2, session=date(2026, 3, 10))
    before_roll = decide("buy", when=chicago(2026, 3, 10, 16, 59), settings=settings, state=state)
    assert not before_roll.allowed
    assert before_roll.reason.startswith("Session limit reached: 2 of 2 entries taken this session.")
    after_roll = decide("buy", when=chicago(2026, 3, 10, 17, 0), settings=settings, state=state)
    assert after_roll.allowed
    assert (after_roll.state.signals_this_session, after_roll.state.session) == (1, date(2026, 3, 11))


def test_closes_do_not_use_up_the_session_limit() -> None:
    settings = RiskSettings(max_signals_per_session=1)
    opened = decide("buy", settings=settings)
    closed = decide("close", when=TUESDAY_10AM + timedelta(minutes=1), settings=settings, state=opened.state)
    assert closed.allowed
    assert closed.state.signals_this_session == 1
    again = decide("buy", when=TUESDAY_10AM + timedelta(minutes=2), settings=settings, state=closed.state)
    assert not again.allowed


@pytest.mark.parametrize(
    ("elapsed", "allowed"),
    [
        (timedelta(seconds=29, microseconds=999999), False),
        (timedelta(seconds=30), True),
        (timedelta(hours=1), True),
    ],
)
def test_the_cooldown_refuses_until_exactly_its_length_has_passed(elapsed: timedelta, allowed: bool) -> None:
    state = RiskState(last_signal_at=TUESDAY_10AM - elapsed)
    verdict = decide("buy", settings=RiskSettings(signal_cooldown=30), state=state)
    assert verdict.allowed is allowed
    if not allowed:
        assert verdict.reason == "Cooldown: the last signal was 29 s ago; the cooldown is 30 s."


def test_the_cooldown_counts_real_seconds_across_the_november_clock_change() -> None:
    # 01:05 CDT and 01:50 CST on November 1 2026 are 105 minutes apart; the wall clock shows 45.
    last = datetime(2026, 11, 1, 1, 5, tzinfo=CHICAGO, fold=0)
    now = datetime(2026, 11, 1, 1, 50, tzinfo=CHICAGO, fold=1)
    settings = RiskSettings(signal_cooldown=3600)
    assert decide("buy", when=now, settings=settings, state=RiskState(last_signal_at=last)).allowed
    settings = RiskSettings(signal_cooldown=7200)
    refused = decide("buy", when=now, settings=settings, state=RiskState(last_signal_at=last))
    assert refused.reason == "Cooldown: the last signal was 6300 s ago; the cooldown is 7200 s."


def test_the_cooldown_never_blocks_a_close() -> None:
    state = RiskState(position=1, last_signal_at=TUESDAY_10AM - timedelta(seconds=1))
    assert decide("close", settings=RiskSettings(signal_cooldown=30), state=state).allowed


def test_an_allowed_signal_restarts_the_cooldown() -> None:
    verdict = decide("buy", settings=RiskSettings(signal_cooldown=30))
    assert verdict.state.last_signal_at == TUESDAY_10AM
    follow_up = decide(
        "buy",
        when=TUESDAY_10AM + timedelta(seconds=10),
        settings=RiskSettings(signal_cooldown=30),
        state=verdict.state,
    )
    assert not follow_up.allowed


def test_every_nth_acts_on_signals_n_2n_and_so_on() -> None:
    settings = RiskSettings(signal_delay_nth=3)
    state = RiskState()
    acted = []
    for number in range(1, 8):
        verdict = decide("buy", when=TUESDAY_10AM + timedelta(minutes=number), settings=settings, state=state)
        acted.append(verdict.allowed)
        state = replace(verdict.state, position=0)  # each entry is closed before the next signal
    assert acted == [False, False, True, False, False, True, False]
    assert state.signal_count == 7


def test_every_nth_explains_which_signal_is_next() -> None:
    verdict = decide("buy", settings=RiskSettings(signal_delay_nth=2), state=RiskState(signal_count=2))
    assert verdict.reason == (
        "Only every 2nd signal is acted on: this was signal 3, the next one acted on is signal 4."
    )
    assert verdict.state.signal_count == 3


def test_every_nth_does_not_count_or_block_closes() -> None:
    verdict = decide(
        "close", settings=RiskSettings(signal_delay_nth=5), state=RiskState(position=1, signal_count=1)
    )
    assert verdict.allowed
    assert verdict.state.signal_count == 1


def test_nth_of_zero_or_one_means_every_signal() -> None:
    assert RiskSettings(signal_delay_nth=0).signal_delay_nth == 1
    assert decide("buy", settings=RiskSettings(signal_delay_nth=1)).allowed


# CME sessions and daylight saving


@pytest.mark.parametrize(
    ("moment", "key"),
    [
        (chicago(2026, 3, 10, 16, 59, 59), date(2026, 3, 10)),
        (chicago(2026, 3, 10, 17, 0), date(2026, 3, 11)),
        (chicago(2026, 3, 10, 23, 59), date(2026, 3, 11)),
        (chicago(2026, 3, 11, 0, 1), date(2026, 3, 11)),
        # March 8 2026: clocks spring forward, 17:00 Chicago is 22:00 UTC instead of 23:00.
        (datetime(2026, 3, 7, 22, 59, tzinfo=UTC), date(2026, 3, 7)),
        (datetime(2026, 3, 7, 23, 0, tzinfo=UTC), date(2026, 3, 8)),
        (datetime(2026, 3, 8, 21, 59, tzinfo=UTC), date(2026, 3, 8)),
        (datetime(2026, 3, 8, 22, 0, tzinfo=UTC), date(2026, 3, 9)),
        # November 1 2026: clocks fall back, 17:00 Chicago is 23:00 UTC instead of 22:00.
        (datetime(2026, 10, 31, 22, 0, tzinfo=UTC), date(2026, 11, 1)),
        (datetime(2026, 11, 1, 22, 30, tzinfo=UTC), date(2026, 11, 1)),
        (datetime(2026, 11, 1, 23, 0, tzinfo=UTC), date(2026, 11, 2)),
        # Sunday evening opens Monday's trading day.
        (chicago(2026, 3, 15, 17, 0), date(2026, 3, 16)),
    ],
)
def test_the_trading_day_rolls_at_17_00_chicago_time(moment: datetime, key: date) -> None:
    assert session_key(moment) == key


def test_sessions_around_daylight_saving_last_23_and_25_hours() -> None:
    spring_start, spring_end = session_range(date(2026, 3, 8))
    assert (spring_start, spring_end) == (
        datetime(2026, 3, 7, 23, 0, tzinfo=UTC),
        datetime(2026, 3, 8, 22, 0, tzinfo=UTC),
    )
    assert spring_end - spring_start == timedelta(hours=23)
    fall_start, fall_end = session_range(date(2026, 11, 2))
    assert fall_end - fall_start == timedelta(hours=24)
    fall_start, fall_end = session_range(date(2026, 11, 1))
    assert fall_end - fall_start == timedelta(hours=25)


def test_session_start_is_the_last_17_00_in_chicago() -> None:
    start = session_start(datetime(2026, 3, 9, 3, 0, tzinfo=UTC))  # 22:00 CDT on March 8
    assert start == chicago(2026, 3, 8, 17, 0)
    assert start == datetime(2026, 3, 8, 22, 0, tzinfo=UTC)
    assert session_start(chicago(2026, 3, 9, 17, 0)) == chicago(2026, 3, 9, 17, 0)
    for moment in (chicago(2026, 11, 1, 1, 30), datetime(2026, 11, 1, 7, 30, tzinfo=UTC)):
        assert session_range(session_key(moment))[0] <= moment < session_range(session_key(moment))[1]


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        session_key(datetime(2026, 3, 10, 10))
    with pytest.raises(ValueError, match="timezone-aware"):
        SignalInput(action="buy", received_at=datetime(2026, 3, 10, 10))


# Auto-flat


@pytest.mark.parametrize(
    ("moment", "position", "due"),
    [
        (chicago(2026, 3, 10, 15, 59), 2, False),
        (chicago(2026, 3, 10, 16, 0), 2, True),
        (chicago(2026, 3, 10, 16, 0), -1, True),
        (chicago(2026, 3, 10, 16, 0), 0, False),
        (chicago(2026, 3, 11, 9, 0), 1, True),
    ],
)
def test_auto_flat_is_due_outside_the_window_with_a_position(
    moment: datetime, position: int, due: bool
) -> None:
    settings = RiskSettings(time_filter_1=REGULAR_HOURS, auto_flat_after_cutoff=True)
    assert auto_flat_due(moment, settings, position) is due


def test_auto_flat_needs_the_setting_and_a_window() -> None:
    late = chicago(2026, 3, 10, 20)
    assert not auto_flat_due(late, RiskSettings(time_filter_1=REGULAR_HOURS), 1)
    assert not auto_flat_due(late, RiskSettings(auto_flat_after_cutoff=True), 1)


# Settings and overrides


def test_a_traders_overrides_win_and_none_keeps_the_recorders_value() -> None:
    recorder = RiskSettings(initial_position_size=2, signal_cooldown=60, max_daily_loss=Decimal(500))
    merged = merge_settings(
        recorder, {"initial_position_size": 5, "signal_cooldown": None, "max_daily_loss": Decimal(0)}
    )
    assert merged.initial_position_size == 5
    assert merged.signal_cooldown == 60
    assert merged.max_daily_loss == 0  # an explicit 0 turns the limit off


def test_time_filter_overrides_merge_field_by_field() -> None:
    recorder = RiskSettings(time_filter_1=REGULAR_HOURS)
    merged = merge_settings(recorder, {"time_filter_1_stop": time(12, 0), "time_filter_1_start": None})
    assert merged.time_filter_1 == TimeWindow(True, time(9, 30), time(12, 0))
    switched_off = merge_settings(recorder, {"time_filter_1_enabled": False})
    assert switched_off.windows == ()
    replaced = merge_settings(recorder, {"time_filter_1": OVERNIGHT})
    assert replaced.time_filter_1 == OVERNIGHT


def test_an_empty_text_override_means_the_recorders_value() -> None:
    merged = merge_settings(
        RiskSettings(timezone="America/New_York"), {"timezone": "", "direction_filter": " "}
    )
    assert (merged.timezone, merged.direction_filter) == ("America/New_York", Direction.BOTH)


def test_an_unknown_override_is_refused_instead_of_silently_ignored() -> None:
    with pytest.raises(ValueError, match="not a risk setting"):
        merge_settings(RiskSettings(), {"max_daily_los": 100})


def test_settings_round_trip_through_the_recorder_api_field_names() -> None:
    settings = RiskSettings(
        initial_position_size=2,
        time_filter_2=OVERNIGHT,
        direction_filter="short",
        max_daily_loss=Decimal("250.50"),
        auto_flat_after_cutoff=True,
    )
    fields = settings.as_fields()
    assert set(fields) == RISK_FIELDS
    assert {"time_filter_1_enabled", "time_filter_2_start", "signal_delay_nth", "timezone"} <= RISK_FIELDS
    assert RiskSettings.from_fields({**fields, "name": "ignored", "symbol": "ES"}) == settings


def test_invalid_settings_are_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="Unknown time zone"):
        RiskSettings(timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="direction filter"):
        RiskSettings(direction_filter="sideways")
    with pytest.raises(ValueError, match="at least 0"):
        RiskSettings(signal_cooldown=-1)
    with pytest.raises(ValueError, match="negative"):
        RiskSettings(max_daily_loss=Decimal(-1))


def test_signal_values_are_parsed_from_alert_words() -> None:
    signal = SignalInput(action="LONG", received_at=TUESDAY_10AM, market_position="Flat", price="4500.25")
    assert (signal.action, signal.market_position, signal.price) == (
        Action.BUY,
        MarketPosition.FLAT,
        Decimal("4500.25"),
    )
    with pytest.raises(ValueError, match="buy, sell or close"):
        SignalInput(action="hold", received_at=TUESDAY_10AM)


# The recorder's virtual book


ES = CONTRACTS["ES"]


def test_the_book_averages_adds_and_realizes_pnl_through_the_point_value() -> None:
    book, realized = RecorderBook().fill(2, Decimal("4500.00"), ES)
    book, realized = book.fill(1, Decimal("4503.00"), ES)
    assert (book.position, book.avg_price, realized) == (3, Decimal("4501.00000000"), 0)
    book, realized = book.fill(-3, Decimal("4505.00"), ES)
    assert realized == Decimal("600.00")  # 4 points x 3 contracts x $50
    assert (book.position, book.avg_price, book.realized_pnl) == (0, None, Decimal("600.00"))


def test_a_short_book_gains_when_the_price_falls_and_a_flip_opens_at_the_fill() -> None:
    book, _ = RecorderBook().fill(-2, Decimal("4500.00"), ES)
    assert book.unrealized_pnl(Decimal("4490.00"), ES) == Decimal("1000.00")
    book, realized = book.fill(3, Decimal("4490.00"), ES)
    assert realized == Decimal("1000.00")
    assert (book.position, book.avg_price) == (1, Decimal("4490.00"))


def test_a_partial_close_keeps_the_average_price() -> None:
    book, _ = RecorderBook().fill(3, Decimal("4500.00"), ES)
    book, realized = book.fill(-1, Decimal("4498.00"), ES)
    assert (book.position, book.avg_price, realized) == (2, Decimal("4500.00000000"), Decimal("-100.00"))


def test_the_book_follows_allowed_verdicts_and_ignores_refused_ones() -> None:
    opened = decide("buy", quantity=2)
    book, _ = RecorderBook().apply(opened, Decimal("4500"), ES)
    refused = decide("close", quantity=0, state=opened.state)
    assert book.apply(refused, Decimal("4400"), ES) == (book, Decimal("0.00"))
    reversed_ = decide("sell", when=TUESDAY_10AM + timedelta(minutes=1), state=opened.state)
    book, realized = book.apply(reversed_, Decimal("4502"), ES)
    assert (book.position, realized) == (-1, Decimal("200.00"))


def test_a_book_with_a_position_needs_an_average_price() -> None:
    with pytest.raises(ValueError, match="average price"):
        RecorderBook(position=1)
