"""Order plans: entries, take-profit/stop pairs, average-down, reversals and closes, all on the tick grid."""

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading.plans import (
    PLAN_FIELDS,
    IntentAction,
    IntentRole,
    IntentType,
    OrderIntent,
    OrderPlan,
    PlanSettings,
    StopKind,
    TakeProfitTarget,
    allocate_trims,
    blended_average,
    merge_plan_settings,
    plan_add,
    plan_close,
    plan_for_verdict,
    plan_open,
    plan_protection,
    plan_reduce,
    plan_reverse,
    replan_after_average_down,
)
from trading.risk import RiskSettings, RiskState, Side, SignalInput, evaluate
from trading.symbols import CONTRACTS, ContractInfo, OffsetUnit, is_on_tick

ES = CONTRACTS["ES"]
CL = CONTRACTS["CL"]
THREE_TARGETS = ({"value": 8, "trim": 1}, {"value": 16, "trim": 1}, {"value": 24, "trim": 1})


def prices(plan: OrderPlan) -> dict[str, Decimal | None]:
    return {
        intent.key: intent.price if intent.price is not None else intent.stop_price for intent in plan.intents
    }


# Entries and brackets


def test_an_open_with_one_target_and_a_stop_is_one_bracket() -> None:
    plan_settings = PlanSettings(tp_targets=[{"value": 8}], sl_enabled=True, sl_amount=Decimal(12))
    plan = plan_open(
        side=Side.LONG, quantity=2, entry_price=Decimal("4500.00"), contract=ES, settings=plan_settings
    )
    entry, take_profit, stop = plan.intents
    assert (entry.role, entry.action, entry.order_type, entry.quantity) == (
        IntentRole.ENTRY,
        IntentAction.BUY,
        IntentType.MARKET,
        2,
    )
    assert (take_profit.action, take_profit.order_type, take_profit.price, take_profit.quantity) == (
        IntentAction.SELL,
        IntentType.LIMIT,
        Decimal("4502.00"),
        2,
    )
    assert (stop.action, stop.order_type, stop.stop_price, stop.quantity) == (
        IntentAction.SELL,
        IntentType.STOP,
        Decimal("4497.00"),
        2,
    )
    assert take_profit.oco == stop.oco != ""
    assert plan.brackets == (("entry", "tp1", "sl1"),)
    assert plan.separate_intents == ()
    assert not plan.cancel_working_orders


def test_several_targets_get_one_stop_each_so_a_partial_fill_never_leaves_too_large_a_stop() -> None:
    plan_settings = PlanSettings(tp_targets=THREE_TARGETS, sl_enabled=True, sl_amount=Decimal(10))
    plan = plan_open(
        side=Side.SHORT, quantity=5, entry_price=Decimal("4500"), contract=ES, settings=plan_settings
    )
    assert [(tp.key, tp.quantity, tp.price) for tp in plan.take_profits] == [
        ("tp1", 1, Decimal("4498.00")),
        ("tp2", 1, Decimal("4496.00")),
        ("tp3", 3, Decimal("4494.00")),
    ]
    assert [(sl.key, sl.quantity, sl.stop_price, sl.action) for sl in plan.stops] == [
        ("sl1", 1, Decimal("4502.50"), IntentAction.BUY),
        ("sl2", 1, Decimal("4502.50"), IntentAction.BUY),
        ("sl3", 3, Decimal("4502.50"), IntentAction.BUY),
    ]
    assert {tp.oco for tp in plan.take_profits} == {sl.oco for sl in plan.stops}
    # A bracket's exits take its entry's quantity, so the entry is split: one bracket per target, each
    # contract protected by its own pair the moment it fills.
    assert [(entry.key, entry.action, entry.quantity) for entry in plan.entries] == [
        ("entry1", IntentAction.SELL, 1),
        ("entry2", IntentAction.SELL, 1),
        ("entry3", IntentAction.SELL, 3),
    ]
    assert plan.brackets == (("entry1", "tp1", "sl1"), ("entry2", "tp2", "sl2"), ("entry3", "tp3", "sl3"))
    assert [intent.key for intent in plan.intents] == [
        "entry1",
        "tp1",
        "sl1",
        "entry2",
        "tp2",
        "sl2",
        "entry3",
        "tp3",
        "sl3",
    ]
    assert plan.separate_intents == ()


def test_several_targets_without_a_stop_still_split_the_entry_into_brackets() -> None:
    plan = plan_open(
        side=Side.LONG,
        quantity=3,
        entry_price=Decimal(4500),
        contract=ES,
        settings=PlanSettings(tp_targets=[{"value": 4, "trim": 1}, {"value": 8}]),
    )
    assert plan.brackets == (("entry1", "tp1"), ("entry2", "tp2"))
    assert [entry.quantity for entry in plan.entries] == [1, 2]


@pytest.mark.parametrize(
    "groups",
    [
        (("tp1", "sl1"),),  # no entry first
        (("entry", "tp1", "tp2"),),  # two take-profits on one entry
        (("entry",),),  # nothing rides on it
        (("entry", "tp1"), ("entry", "sl1")),  # one key in two brackets
    ],
)
def test_a_bracket_that_tradovate_could_not_carry_is_refused(groups: tuple) -> None:
    intents = (
        OrderIntent(IntentRole.ENTRY, IntentAction.BUY, IntentType.MARKET, 2, key="entry"),
        OrderIntent(IntentRole.TAKE_PROFIT, IntentAction.SELL, IntentType.LIMIT, 2, Decimal(1), key="tp1"),
        OrderIntent(IntentRole.TAKE_PROFIT, IntentAction.SELL, IntentType.LIMIT, 2, Decimal(2), key="tp2"),
        OrderIntent(IntentRole.STOP_LOSS, IntentAction.SELL, IntentType.STOP, 2, None, Decimal(1), key="sl1"),
    )
    with pytest.raises(ValueError, match=r"[Bb]racket"):
        OrderPlan(intents, groups)


def test_a_bracket_exit_of_another_quantity_than_its_entry_is_refused() -> None:
    intents = (
        OrderIntent(IntentRole.ENTRY, IntentAction.BUY, IntentType.MARKET, 2, key="entry"),
        OrderIntent(IntentRole.TAKE_PROFIT, IntentAction.SELL, IntentType.LIMIT, 1, Decimal(1), key="tp1"),
    )
    with pytest.raises(ValueError, match="entry's quantity"):
        OrderPlan(intents, (("entry", "tp1"),))


def test_targets_beyond_the_position_are_skipped() -> None:
    plan = plan_open(
        side=Side.LONG,
        quantity=2,
        entry_price=Decimal(4500),
        contract=ES,
        settings=PlanSettings(tp_targets=THREE_TARGETS),
    )
    assert [tp.quantity for tp in plan.take_profits] == [1, 1]
    assert all(tp.oco == "" for tp in plan.take_profits)


@pytest.mark.parametrize(
    ("trims", "quantity", "multiplier", "expected"),
    [
        ([1, 1, 1], 5, 1, [1, 1, 3]),
        ([1, 1, 1], 2, 1, [1, 1, 0]),
        ([2, 5], 3, 1, [2, 1]),
        ([1, None, 1], 4, 1, [1, 3, 0]),
        ([1, 1], 6, 2, [2, 4]),
        ([3], 1, 1, [1]),
        ([], 3, 1, []),
    ],
)
def test_trims_are_taken_in_order_capped_by_what_remains_and_the_last_takes_the_rest(
    trims: list, quantity: int, multiplier: int, expected: list[int]
) -> None:
    targets = [TakeProfitTarget(Decimal(4 * (index + 1)), trim) for index, trim in enumerate(trims)]
    assert allocate_trims(targets, quantity, multiplier=multiplier) == expected


@pytest.mark.parametrize(
    ("plan_settings", "stop_price"),
    [
        (PlanSettings(sl_enabled=True, sl_amount=Decimal(8), sl_units="ticks"), Decimal("4498.00")),
        (PlanSettings(sl_enabled=True, sl_amount=Decimal("3.3"), sl_units="points"), Decimal("4496.50")),
        (PlanSettings(sl_enabled=True, sl_amount=Decimal("0.1"), sl_units="percent"), Decimal("4495.50")),
        # $120 on 2 contracts: floor(120 / 25) = 4 ticks.
        (PlanSettings(sl_enabled=True, sl_amount=Decimal(120), sl_units="dollars"), Decimal("4499.00")),
    ],
)
def test_a_stop_in_every_unit_lands_below_a_long_entry(
    plan_settings: PlanSettings, stop_price: Decimal
) -> None:
    plan = plan_open(
        side=Side.LONG, quantity=2, entry_price=Decimal(4500), contract=ES, settings=plan_settings
    )
    assert [stop.stop_price for stop in plan.stops] == [stop_price]
    assert plan.brackets == (("entry", "sl"),)


@pytest.mark.parametrize(
    "plan_settings",
    [
        PlanSettings(sl_enabled=False, sl_amount=Decimal(10)),
        PlanSettings(sl_enabled=True, sl_amount=Decimal(0)),
    ],
)
def test_a_stop_that_is_off_or_zero_places_no_stop(plan_settings: PlanSettings) -> None:
    plan = plan_open(
        side=Side.LONG, quantity=1, entry_price=Decimal(4500), contract=ES, settings=plan_settings
    )
    assert plan.stops == ()
    assert [intent.key for intent in plan.intents] == ["entry"]
    assert plan.brackets == ()


def test_a_dollar_stop_smaller_than_one_tick_is_placed_one_tick_away_and_says_so() -> None:
    plan_settings = PlanSettings(sl_enabled=True, sl_amount=Decimal(20), sl_units="dollars")
    plan = plan_open(
        side=Side.SHORT, quantity=2, entry_price=Decimal(4500), contract=ES, settings=plan_settings
    )
    assert plan.stops[0].stop_price == Decimal("4500.25")
    assert plan.notes == (
        "A $20 stop is less than one tick ($25.00) on 2 ES contracts: the stop is one tick away.",
    )


def test_a_trailing_stop_carries_its_distance_in_points_on_the_grid() -> None:
    plan_settings = PlanSettings(
        sl_enabled=True, sl_amount=Decimal("2.1"), sl_units="points", sl_type="trailing"
    )
    plan = plan_open(
        side=Side.LONG, quantity=1, entry_price=Decimal(4500), contract=ES, settings=plan_settings
    )
    stop = plan.stops[0]
    assert (stop.order_type, stop.stop_price, stop.trail_distance) == (
        IntentType.TRAILING_STOP,
        Decimal("4497.75"),
        Decimal("2.25"),
    )


def test_percent_targets_are_measured_from_the_entry_price() -> None:
    plan_settings = PlanSettings(tp_units="percent", tp_targets=[{"value": "1.5"}])
    plan = plan_open(
        side=Side.LONG, quantity=1, entry_price=Decimal("71.37"), contract=CL, settings=plan_settings
    )
    assert plan.take_profits[0].price == Decimal("72.44")  # 71.37 + 1.07


@pytest.mark.parametrize(
    ("side", "price"), [(Side.LONG, Decimal("4502.25")), (Side.SHORT, Decimal("4497.75"))]
)
def test_an_off_grid_target_is_rounded_away_from_the_entry(side: Side, price: Decimal) -> None:
    plan_settings = PlanSettings(tp_units="points", tp_targets=[{"value": "2.1"}])
    plan = plan_open(side=side, quantity=1, entry_price=Decimal(4500), contract=ES, settings=plan_settings)
    assert plan.take_profits[0].price == price


def test_a_target_too_small_for_the_tick_still_sits_one_tick_on_the_profit_side() -> None:
    plan_settings = PlanSettings(tp_units="percent", tp_targets=[{"value": "0.001"}])
    plan = plan_open(
        side=Side.SHORT, quantity=1, entry_price=Decimal("4500"), contract=ES, settings=plan_settings
    )
    assert plan.take_profits[0].price == Decimal("4499.75")


def test_average_down_sits_on_the_adverse_side_with_the_entry_action() -> None:
    plan_settings = PlanSettings(
        avg_down_enabled=True, avg_down_amount=2, avg_down_point=Decimal(10), sl_enabled=False
    )
    long_plan = plan_open(
        side=Side.LONG,
        quantity=1,
        entry_price=Decimal(4500),
        contract=ES,
        settings=plan_settings,
        multiplier=3,
    )
    (average_down,) = long_plan.with_role(IntentRole.AVERAGE_DOWN)
    assert (average_down.action, average_down.order_type, average_down.price, average_down.quantity) == (
        IntentAction.BUY,
        IntentType.LIMIT,
        Decimal("4497.50"),
        6,
    )
    short_plan = plan_open(
        side=Side.SHORT, quantity=1, entry_price=Decimal(4500), contract=ES, settings=plan_settings
    )
    assert prices(short_plan)["avg1"] == Decimal("4502.50")
    assert short_plan.by_key("avg1").action is IntentAction.SELL


def test_average_down_with_no_distance_places_nothing_and_says_so() -> None:
    plan_settings = PlanSettings(avg_down_enabled=True, avg_down_amount=1, avg_down_point=Decimal(0))
    plan = plan_open(
        side=Side.LONG, quantity=1, entry_price=Decimal(4500), contract=ES, settings=plan_settings
    )
    assert plan.with_role(IntentRole.AVERAGE_DOWN) == ()
    assert "distance is 0" in plan.notes[0]


# Reversals, closes, adds, reductions and replans


def test_a_reversal_exits_the_old_side_before_entering_the_new_one() -> None:
    plan_settings = PlanSettings(tp_targets=[{"value": 8}], sl_enabled=True, sl_amount=Decimal(8))
    plan = plan_reverse(
        position=3, quantity=2, entry_price=Decimal(4500), contract=ES, settings=plan_settings
    )
    exit_order, entry = plan.intents[:2]
    assert (exit_order.role, exit_order.action, exit_order.quantity) == (
        IntentRole.EXIT,
        IntentAction.SELL,
        3,
    )
    assert (entry.role, entry.action, entry.quantity) == (IntentRole.ENTRY, IntentAction.SELL, 2)
    assert prices(plan) == {
        "exit": None,
        "entry": None,
        "tp1": Decimal("4498.00"),
        "sl1": Decimal("4502.00"),
    }
    assert plan.brackets == (("entry", "tp1", "sl1"),)
    assert plan.cancel_working_orders


def test_a_close_is_one_market_exit_that_cancels_working_orders() -> None:
    plan = plan_close(position=-3)
    assert [(i.role, i.action, i.order_type, i.quantity) for i in plan.intents] == [
        (IntentRole.EXIT, IntentAction.BUY, IntentType.MARKET, 3)
    ]
    assert plan.cancel_working_orders


def test_flattening_a_flat_position_only_cancels_working_orders() -> None:
    plan = plan_close(position=0)
    assert plan.intents == ()
    assert plan.cancel_working_orders


def test_an_add_replaces_the_exits_for_the_whole_position_from_the_expected_average() -> None:
    plan_settings = PlanSettings(tp_targets=[{"value": 8}], sl_enabled=True, sl_amount=Decimal(8))
    plan = plan_add(
        side=Side.LONG,
        quantity=1,
        position_quantity=2,
        average_price=Decimal("4500.00"),
        entry_price=Decimal("4491.00"),
        contract=ES,
        settings=plan_settings,
    )
    # (2 x 4500 + 4491) / 3 = 4497.00
    assert prices(plan) == {"entry": None, "tp1": Decimal("4499.00"), "sl1": Decimal("4495.00")}
    assert plan.by_key("entry").quantity == 1
    assert plan.by_key("tp1").quantity == plan.by_key("sl1").quantity == 3
    assert plan.cancel_working_orders
    assert plan.brackets == ()


def test_a_reduction_exits_part_and_protects_what_remains() -> None:
    plan_settings = PlanSettings(tp_targets=THREE_TARGETS, sl_enabled=True, sl_amount=Decimal(8))
    plan = plan_reduce(
        side=Side.SHORT,
        quantity=2,
        position_quantity=5,
        average_price=Decimal("4500"),
        contract=ES,
        settings=plan_settings,
    )
    assert (plan.intents[0].role, plan.intents[0].action, plan.intents[0].quantity) == (
        IntentRole.EXIT,
        IntentAction.BUY,
        2,
    )
    assert [tp.quantity for tp in plan.take_profits] == [1, 1, 1]
    assert sum(stop.quantity for stop in plan.stops) == 3
    assert plan.cancel_working_orders


def test_reducing_by_the_whole_position_is_a_close() -> None:
    plan = plan_reduce(
        side=Side.LONG,
        quantity=4,
        position_quantity=3,
        average_price=Decimal(1),
        contract=ES,
        settings=PlanSettings(),
    )
    assert plan == plan_close(position=3)


def test_after_an_average_down_exits_follow_the_new_average_rounded_to_the_tick() -> None:
    plan_settings = PlanSettings(
        tp_targets=[{"value": 8, "trim": 1}, {"value": 16}], sl_enabled=True, sl_amount=8
    )
    average = blended_average(1, Decimal("4500.00"), 2, Decimal("4490.25"))
    assert average == Decimal("4493.5000000000")
    plan = replan_after_average_down(
        side=Side.LONG, quantity=3, average_price=Decimal("4493.60"), contract=ES, settings=plan_settings
    )
    assert prices(plan) == {
        "tp1": Decimal("4495.50"),
        "sl1": Decimal("4491.50"),
        "tp2": Decimal("4497.50"),
        "sl2": Decimal("4491.50"),
    }
    assert [tp.quantity for tp in plan.take_profits] == [1, 2]
    assert plan.cancel_working_orders
    assert plan.with_role(IntentRole.ENTRY) == ()


def test_plans_follow_risk_verdicts() -> None:
    moment = datetime(2026, 3, 10, 10, tzinfo=ZoneInfo("America/Chicago"))
    plan_settings = PlanSettings(tp_targets=[{"value": 8}], sl_enabled=True, sl_amount=8)

    def plan_for(action: str, position: int, **fields: object) -> OrderPlan:
        signal = SignalInput(action=action, received_at=moment, **fields)  # type: ignore[arg-type]
        verdict = evaluate(signal, RiskSettings(), RiskState(position=position))
        return plan_for_verdict(
            verdict,
            entry_price=Decimal(4500),
            average_price=Decimal(4490),
            contract=ES,
            settings=plan_settings,
        )

    assert plan_for("buy", 0).brackets == (("entry", "tp1", "sl1"),)
    assert [i.role for i in plan_for("sell", 2).intents[:2]] == [IntentRole.EXIT, IntentRole.ENTRY]
    assert plan_for("close", 2) == plan_close(position=2)
    assert plan_for("close", 0) == OrderPlan()  # refused: nothing to close
    assert plan_for("buy", 1).by_key("tp1").quantity == 2
    assert plan_for("sell", 3, quantity=1, market_position="long").by_key("exit").quantity == 1


def test_planning_an_add_without_the_average_price_is_an_error() -> None:
    moment = datetime(2026, 3, 10, 10, tzinfo=ZoneInfo("America/Chicago"))
    verdict = evaluate(SignalInput(action="buy", received_at=moment), RiskSettings(), RiskState(position=1))
    with pytest.raises(ValueError, match="average price"):
        plan_for_verdict(verdict, entry_price=Decimal(4500), contract=ES, settings=PlanSettings())
    opening = evaluate(SignalInput(action="buy", received_at=moment), RiskSettings(), RiskState())
    with pytest.raises(ValueError, match="entry price"):
        plan_for_verdict(opening, contract=ES, settings=PlanSettings())


# Settings and validation


def test_plan_settings_read_the_recorder_api_fields_and_overrides_win() -> None:
    recorder = PlanSettings.from_fields(
        {
            "name": "ignored",
            "tp_units": "points",
            "tp_targets": [{"value": 8, "trim": 1}],
            "sl_enabled": True,
            "sl_amount": Decimal(100),
            "sl_units": "dollars",
            "sl_type": "fixed",
        }
    )
    assert recorder.tp_targets == (TakeProfitTarget(Decimal(8), 1),)
    assert set(recorder.as_fields()) == PLAN_FIELDS
    merged = merge_plan_settings(recorder, {"sl_amount": 0, "sl_type": None, "tp_targets": []})
    assert (merged.sl_amount, merged.sl_type, merged.tp_targets, merged.tp_units) == (
        0,
        StopKind.FIXED,
        (),
        OffsetUnit.POINTS,
    )
    assert not merged.places_stop
    with pytest.raises(ValueError, match="not an order plan setting"):
        merge_plan_settings(recorder, {"sl_amout": 1})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tp_units": "dollars"}, "Take-profit distances are in ticks, points or percent"),
        ({"tp_targets": [{"value": 0}]}, "more than 0"),
        ({"tp_targets": [{"value": 4, "trim": 0}]}, "at least 1"),
        ({"tp_targets": [{"trim": 1}]}, '"value": 8'),
        ({"sl_amount": -5}, "cannot be negative"),
        ({"sl_type": "guaranteed"}, "fixed or trailing"),
        ({"avg_down_units": "$"}, "Average-down distances"),
    ],
)
def test_invalid_plan_settings_are_refused_with_a_clear_message(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PlanSettings(**fields)


def test_an_order_intent_must_carry_the_prices_its_type_needs() -> None:
    with pytest.raises(ValueError, match="Limit order needs price"):
        OrderIntent(IntentRole.TAKE_PROFIT, IntentAction.SELL, IntentType.LIMIT, 1, key="tp1")
    with pytest.raises(ValueError, match="Market order takes no price"):
        OrderIntent(IntentRole.ENTRY, IntentAction.BUY, IntentType.MARKET, 1, price=Decimal(1), key="entry")
    with pytest.raises(ValueError, match="at least 1"):
        OrderIntent(IntentRole.ENTRY, IntentAction.BUY, IntentType.MARKET, 0, key="entry")


# Properties over every contract, direction and unit


def distances(unit: OffsetUnit) -> st.SearchStrategy[Decimal]:
    if unit is OffsetUnit.TICKS:
        return st.integers(1, 400).map(Decimal)
    if unit is OffsetUnit.PERCENT:
        return st.decimals(min_value=Decimal("0.001"), max_value=Decimal(5), places=3)
    return st.decimals(min_value=Decimal("0.01"), max_value=Decimal(200), places=2)


@st.composite
def plan_settings_strategy(draw: st.DrawFn) -> PlanSettings:
    tp_units = draw(st.sampled_from([OffsetUnit.TICKS, OffsetUnit.POINTS, OffsetUnit.PERCENT]))
    targets = draw(
        st.lists(
            st.builds(TakeProfitTarget, distances(tp_units), st.none() | st.integers(1, 6)),
            max_size=4,
        )
    )
    sl_units = draw(st.sampled_from(list(OffsetUnit)))
    sl_amount = draw(st.just(Decimal(0)) | distances(sl_units) | st.integers(1, 5000).map(Decimal))
    avg_units = draw(st.sampled_from([OffsetUnit.TICKS, OffsetUnit.POINTS, OffsetUnit.PERCENT]))
    return PlanSettings(
        tp_units=tp_units,
        tp_targets=tuple(targets),
        sl_enabled=draw(st.booleans()),
        sl_amount=sl_amount,
        sl_units=sl_units,
        sl_type=draw(st.sampled_from(list(StopKind))),
        avg_down_enabled=draw(st.booleans()),
        avg_down_amount=draw(st.integers(0, 5)),
        avg_down_point=draw(distances(avg_units)),
        avg_down_units=avg_units,
    )


contracts = st.sampled_from(list(CONTRACTS.values()))
reference_prices = st.decimals(min_value=Decimal(1), max_value=Decimal(60_000), places=4)


def assert_plan_is_safe(
    plan: OrderPlan,
    side: Side,
    quantity: int,
    reference: Decimal,
    contract: ContractInfo,
    config: PlanSettings,
) -> None:
    tick = contract.tick_size
    exit_action = IntentAction.SELL if side is Side.LONG else IntentAction.BUY
    for intent in plan.intents:
        for price in (intent.price, intent.stop_price, intent.trail_distance):
            assert price is None or is_on_tick(price, tick), (intent, price)
        if intent.trail_distance is not None:
            assert intent.trail_distance >= tick
    for take_profit in plan.take_profits:
        assert take_profit.action is exit_action
        assert (take_profit.price - reference) * side.sign > 0
    for stop in plan.stops:
        assert stop.action is exit_action
        assert (reference - stop.stop_price) * side.sign > 0
    for average_down in plan.with_role(IntentRole.AVERAGE_DOWN):
        assert average_down.action is not exit_action
        assert (reference - average_down.price) * side.sign > 0
    if config.tp_targets:
        assert sum(tp.quantity for tp in plan.take_profits) == quantity
    else:
        assert plan.take_profits == ()
    if config.places_stop:
        assert sum(stop.quantity for stop in plan.stops) == quantity
        for take_profit in plan.take_profits:
            (pair,) = [stop for stop in plan.stops if stop.oco == take_profit.oco]
            assert pair.quantity == take_profit.quantity
    else:
        assert plan.stops == ()
    for group in plan.brackets:
        entry = plan.by_key(group[0])
        assert entry.role is IntentRole.ENTRY
        assert all(plan.by_key(key).quantity == entry.quantity for key in group[1:])
    # What rides with an entry is everything planned to protect it: nothing waits to go out after the fill.
    if plan.entries:
        assert not {intent.role for intent in plan.separate_intents} & {
            IntentRole.TAKE_PROFIT,
            IntentRole.STOP_LOSS,
        }


@settings(max_examples=250, deadline=None)
@given(
    contract=contracts,
    side=st.sampled_from(list(Side)),
    quantity=st.integers(1, 40),
    entry_price=reference_prices,
    config=plan_settings_strategy(),
    multiplier=st.integers(1, 3),
)
def test_an_open_plan_is_on_the_grid_with_exits_on_the_right_sides_and_trims_summing_to_the_position(
    contract: ContractInfo,
    side: Side,
    quantity: int,
    entry_price: Decimal,
    config: PlanSettings,
    multiplier: int,
) -> None:
    plan = plan_open(
        side=side,
        quantity=quantity,
        entry_price=entry_price,
        contract=contract,
        settings=config,
        multiplier=multiplier,
    )
    assert sum(entry.quantity for entry in plan.entries) == quantity
    assert {entry.order_type for entry in plan.entries} == {IntentType.MARKET}
    assert_plan_is_safe(plan, side, quantity, entry_price, contract, config)


@settings(max_examples=150, deadline=None)
@given(
    contract=contracts,
    side=st.sampled_from(list(Side)),
    quantity=st.integers(1, 40),
    average_price=reference_prices,
    config=plan_settings_strategy(),
)
def test_a_replan_after_average_down_is_on_the_grid_around_the_raw_and_the_rounded_average(
    contract: ContractInfo, side: Side, quantity: int, average_price: Decimal, config: PlanSettings
) -> None:
    plan = replan_after_average_down(
        side=side, quantity=quantity, average_price=average_price, contract=contract, settings=config
    )
    assert_plan_is_safe(plan, side, quantity, average_price, contract, config)
    with_average_down = plan_protection(
        side=side,
        quantity=quantity,
        average_price=average_price,
        contract=contract,
        settings=config,
        include_average_down=True,
    )
    assert_plan_is_safe(with_average_down, side, quantity, average_price, contract, config)
