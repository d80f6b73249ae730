"""Symbol resolution, the contract table and exact tick arithmetic."""

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading.symbols import (
    CONTRACTS,
    ContractInfo,
    OffsetUnit,
    SymbolError,
    contract_for,
    contract_symbol,
    is_on_tick,
    month_code,
    month_from_code,
    offset_in_points,
    parse_symbol,
    round_to_tick,
    stop_ticks_for_dollar_loss,
    symbol_root,
)

ES = CONTRACTS["ES"]
CL = CONTRACTS["CL"]


@pytest.mark.parametrize(
    ("text", "root"),
    [
        ("ES", "ES"),
        ("es", "ES"),
        (" ES ", "ES"),
        ("ESZ6", "ES"),
        ("ESZ2026", "ES"),
        ("ESZ26", "ES"),
        ("ES1!", "ES"),
        ("ES2!", "ES"),
        ("es1!", "ES"),
        ("CME_MINI:ES1!", "ES"),
        ("CME_MINI:ESZ2026", "ES"),
        ("/ESZ6", "ES"),
        ("MES", "MES"),
        ("MESZ6", "MES"),
        ("MES1!", "MES"),
        ("M2K", "M2K"),
        ("M2KZ6", "M2K"),
        ("M2K1!", "M2K"),
        ("CME_MINI:M2KH2027", "M2K"),
        ("MCLF7", "MCL"),
        ("CLF7", "CL"),
        ("NYMEX:CL1!", "CL"),
        ("MGCJ6", "MGC"),
        ("GCG2027", "GC"),
        ("YMM6", "YM"),
        ("CBOT_MINI:MYM1!", "MYM"),
        ("NQU6", "NQ"),
        ("MNQ1!", "MNQ"),
        ("RTYZ6", "RTY"),
    ],
)
def test_every_symbol_form_resolves_to_its_root(text: str, root: str) -> None:
    assert symbol_root(text) == root
    assert symbol_root(text, CONTRACTS.keys()) == root


def test_a_dated_symbol_keeps_its_month_and_year_and_names_the_tradovate_contract() -> None:
    parsed = parse_symbol("CME_MINI:ESZ2026")
    assert (parsed.root, parsed.month, parsed.year, parsed.exchange) == ("ES", 12, 2026, "CME_MINI")
    assert parsed.tradovate_symbol == "ESZ6"
    assert parse_symbol("MCLF7").tradovate_symbol == "MCLF7"


def test_a_continuous_symbol_names_no_contract_so_the_adapter_asks_for_the_front_month() -> None:
    parsed = parse_symbol("ES2!")
    assert parsed.continuous == 2
    assert parsed.tradovate_symbol is None
    assert parse_symbol("ES").tradovate_symbol is None


def test_a_known_root_wins_over_reading_its_tail_as_a_month_and_year() -> None:
    assert symbol_root("ABZ6") == "AB"
    assert symbol_root("ABZ6", ["ABZ6", "AB"]) == "ABZ6"


def test_a_symbol_of_an_unknown_contract_is_refused_when_roots_are_given() -> None:
    with pytest.raises(SymbolError, match="not a supported contract"):
        symbol_root("ZNZ6", CONTRACTS.keys())


@pytest.mark.parametrize("text", ["", "   ", "!!!", "1!", "CME_MINI:", "ES-Z6", "12", "11!"])
def test_text_that_is_not_a_symbol_is_refused_with_a_clear_error(text: str) -> None:
    with pytest.raises(SymbolError, match="symbol"):
        symbol_root(text)


def test_contract_for_returns_the_specification_of_the_root() -> None:
    assert contract_for("CME_MINI:MES1!") is CONTRACTS["MES"]
    with pytest.raises(SymbolError):
        contract_for("ZB1!")


def test_the_contract_table_matches_the_tradovate_spec() -> None:
    rows = {
        "ES": ("0.25", "12.50", "50", "HMUZ"),
        "MES": ("0.25", "1.25", "5", "HMUZ"),
        "NQ": ("0.25", "5.00", "20", "HMUZ"),
        "MNQ": ("0.25", "0.50", "2", "HMUZ"),
        "YM": ("1.00", "5.00", "5", "HMUZ"),
        "MYM": ("1.00", "0.50", "0.50", "HMUZ"),
        "RTY": ("0.10", "5.00", "50", "HMUZ"),
        "M2K": ("0.10", "0.50", "5", "HMUZ"),
        "CL": ("0.01", "10.00", "1000", "FGHJKMNQUVXZ"),
        "MCL": ("0.01", "1.00", "100", "FGHJKMNQUVXZ"),
        "GC": ("0.10", "10.00", "100", "GJMQVZ"),
        "MGC": ("0.10", "1.00", "10", "GJMQVZ"),
    }
    assert set(CONTRACTS) == set(rows)
    for root, (tick, tick_value, point_value, months) in rows.items():
        contract = CONTRACTS[root]
        assert (contract.tick_size, contract.tick_value, contract.point_value, contract.months) == (
            Decimal(tick),
            Decimal(tick_value),
            Decimal(point_value),
            months,
        )
        # tick value is the tick expressed in dollars: the table must be self-consistent.
        assert contract.tick_size * contract.point_value == contract.tick_value


def test_a_contract_with_a_zero_tick_or_bad_months_is_refused() -> None:
    with pytest.raises(ValueError, match="tick_size"):
        ContractInfo("XX", Decimal(0), Decimal(1), Decimal(1), "H")
    with pytest.raises(ValueError, match="month codes"):
        ContractInfo("XX", Decimal("0.25"), Decimal(1), Decimal(4), "HA")


def test_month_codes_run_from_f_for_january_to_z_for_december() -> None:
    assert [month_code(month) for month in range(1, 13)] == list("FGHJKMNQUVXZ")
    assert month_from_code("z") == 12
    assert contract_symbol("es", 2026, 12) == "ESZ6"
    assert contract_symbol("CL", 2030, 1) == "CLF0"
    with pytest.raises(ValueError, match="month code"):
        month_from_code("A")
    with pytest.raises(ValueError, match="1 to 12"):
        month_code(13)


@pytest.mark.parametrize(
    ("price", "mode", "expected"),
    [
        ("4500.10", "nearest", "4500.00"),
        ("4500.125", "nearest", "4500.25"),  # a tie goes away from zero
        ("4500.13", "nearest", "4500.25"),
        ("4500.01", "up", "4500.25"),
        ("4500.24", "down", "4500.00"),
        ("4500.25", "up", "4500.25"),
        ("4500.25", "down", "4500.25"),
        ("-0.10", "down", "-0.25"),
        ("-0.10", "up", "0.00"),
        ("-0.125", "nearest", "-0.25"),
    ],
)
def test_round_to_tick_puts_a_price_on_the_grid_exactly(price: str, mode: str, expected: str) -> None:
    assert round_to_tick(Decimal(price), Decimal("0.25"), mode) == Decimal(expected)  # type: ignore[arg-type]


def test_round_to_tick_refuses_an_unknown_mode_or_a_zero_tick() -> None:
    with pytest.raises(ValueError, match="nearest, up or down"):
        round_to_tick(Decimal(1), Decimal("0.25"), "ceiling")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        round_to_tick(Decimal(1), Decimal(0))


@settings(max_examples=300, deadline=None)
@given(
    price=st.decimals(min_value=-1000, max_value=100_000, places=4, allow_nan=False, allow_infinity=False),
    contract=st.sampled_from(list(CONTRACTS.values())),
)
def test_rounding_lands_on_the_grid_within_one_tick_in_the_asked_direction(
    price: Decimal, contract: ContractInfo
) -> None:
    tick = contract.tick_size
    up, down, nearest = (round_to_tick(price, tick, mode) for mode in ("up", "down", "nearest"))
    assert all(is_on_tick(value, tick) for value in (up, down, nearest))
    assert down <= price <= up
    assert up - down in (0, tick)
    assert abs(nearest - price) <= tick / 2


def test_offsets_convert_ticks_points_and_percent_to_points() -> None:
    assert offset_in_points(8, "ticks", ES, Decimal(4500)) == Decimal(2)
    assert offset_in_points(Decimal("2.5"), OffsetUnit.POINTS, ES, Decimal(4500)) == Decimal("2.5")
    # 0.1% of 4500.00 is 4.50 points; of 4512.34 it is 4.51234, rounded to the tick.
    assert offset_in_points(Decimal("0.1"), "percent", ES, Decimal(4500)) == Decimal("4.50")
    assert offset_in_points(Decimal("0.1"), "%", ES, Decimal("4512.34")) == Decimal("4.50")
    assert offset_in_points(1, "percent", CL, Decimal("71.37")) == Decimal("0.71")


def test_a_dollar_offset_is_whole_ticks_for_the_quantity() -> None:
    # $100 on 2 ES contracts: floor(100 / 25) = 4 ticks = 1 point.
    assert offset_in_points(100, "dollars", ES, Decimal(4500), quantity=2) == Decimal("1.00")
    with pytest.raises(ValueError, match="number of contracts"):
        offset_in_points(100, "dollars", ES, Decimal(4500))


def test_a_negative_offset_or_an_unknown_unit_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        offset_in_points(-1, "ticks", ES, Decimal(4500))
    with pytest.raises(ValueError, match="ticks, points, percent or dollars"):
        offset_in_points(1, "pips", ES, Decimal(4500))


@pytest.mark.parametrize(
    ("loss", "root", "quantity", "ticks"),
    [
        ("100", "ES", 1, 8),
        ("100", "ES", 2, 4),
        ("99.99", "ES", 1, 7),
        ("12.49", "ES", 1, 0),
        ("12.50", "ES", 1, 1),
        ("50", "MES", 3, 13),
        ("100", "MYM", 1, 200),
        ("250", "CL", 1, 25),
    ],
)
def test_the_ticks_for_a_dollar_loss_are_rounded_down(
    loss: str, root: str, quantity: int, ticks: int
) -> None:
    contract = CONTRACTS[root]
    result = stop_ticks_for_dollar_loss(Decimal(loss), contract, quantity)
    assert result == ticks
    assert result * contract.tick_value * quantity <= Decimal(loss)


def test_a_dollar_loss_needs_a_positive_whole_quantity() -> None:
    with pytest.raises(ValueError, match="positive whole number"):
        stop_ticks_for_dollar_loss(Decimal(100), ES, 0)
    with pytest.raises(ValueError, match="negative"):
        stop_ticks_for_dollar_loss(Decimal(-1), ES, 1)
