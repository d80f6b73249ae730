"""Futures symbols, contract specifications and exact price arithmetic on the tick grid."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from enum import StrEnum
from typing import Literal

__all__ = [
    "CONTRACTS",
    "MONTH_CODES",
    "ContractInfo",
    "OffsetUnit",
    "ParsedSymbol",
    "RoundMode",
    "SymbolError",
    "contract_for",
    "contract_symbol",
    "is_on_tick",
    "month_code",
    "month_from_code",
    "offset_in_points",
    "parse_symbol",
    "round_to_tick",
    "stop_ticks_for_dollar_loss",
    "symbol_root",
    "to_decimal",
]

MONTH_CODES = "FGHJKMNQUVXZ"
QUARTERLY = "HMUZ"
EVERY_MONTH = MONTH_CODES

RoundMode = Literal["nearest", "up", "down"]
_ROUNDINGS = {"nearest": ROUND_HALF_UP, "up": ROUND_CEILING, "down": ROUND_FLOOR}


class SymbolError(ValueError):
    """A symbol that cannot be resolved to a known contract root."""


class OffsetUnit(StrEnum):
    """Units a distance from a price can be given in."""

    TICKS = "ticks"
    POINTS = "points"
    PERCENT = "percent"
    DOLLARS = "dollars"

    @classmethod
    def parse(cls, value: OffsetUnit | str) -> OffsetUnit:
        """Return the unit for a stored or typed name (singular, plural, `%` and `$` accepted)."""
        if isinstance(value, cls):
            return value
        key = str(value).strip().lower()
        unit = _UNIT_ALIASES.get(key)
        if unit is None:
            raise ValueError(f"Unknown unit {value!r}: use ticks, points, percent or dollars.")
        return unit


_UNIT_ALIASES = {
    "tick": OffsetUnit.TICKS,
    "ticks": OffsetUnit.TICKS,
    "point": OffsetUnit.POINTS,
    "points": OffsetUnit.POINTS,
    "pts": OffsetUnit.POINTS,
    "percent": OffsetUnit.PERCENT,
    "percentage": OffsetUnit.PERCENT,
    "%": OffsetUnit.PERCENT,
    "dollar": OffsetUnit.DOLLARS,
    "dollars": OffsetUnit.DOLLARS,
    "$": OffsetUnit.DOLLARS,
    "usd": OffsetUnit.DOLLARS,
}


def to_decimal(value: Decimal | int | float | str, *, name: str = "value") -> Decimal:
    """Return `value` as a finite Decimal, raising ValueError with `name` in the message otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, not {value!r}.")
    if isinstance(value, Decimal):
        result = value
    else:
        try:
            # str() first: Decimal(0.1) would carry the float's binary noise into every price.
            result = Decimal(str(value).strip())
        except (InvalidOperation, ValueError):
            raise ValueError(f"{name} must be a number, not {value!r}.") from None
    if not result.is_finite():
        raise ValueError(f"{name} must be a finite number, not {value!r}.")
    return result


@dataclass(frozen=True)
class ContractInfo:
    """Tick size, tick value and point value of one futures root."""

    root: str
    tick_size: Decimal
    tick_value: Decimal
    point_value: Decimal
    months: str
    name: str = ""
    exchange: str = ""

    def __post_init__(self) -> None:
        for field in ("tick_size", "tick_value", "point_value"):
            amount = to_decimal(getattr(self, field), name=field)
            if amount <= 0:
                raise ValueError(f"{field} of {self.root} must be positive, not {amount}.")
            object.__setattr__(self, field, amount)
        object.__setattr__(self, "root", self.root.strip().upper())
        months = self.months.replace(" ", "").upper()
        if not months or any(code not in MONTH_CODES for code in months):
            raise ValueError(
                f"months of {self.root} must be month codes from {MONTH_CODES}, not {self.months!r}."
            )
        object.__setattr__(self, "months", months)


def _contract(
    root: str, name: str, exchange: str, tick: str, tick_value: str, point: str, months: str
) -> ContractInfo:
    return ContractInfo(root, Decimal(tick), Decimal(tick_value), Decimal(point), months, name, exchange)


# The table of shared/specs/tradovate.md; the data migration for ContractSpec loads it from here.
CONTRACTS: Mapping[str, ContractInfo] = {
    contract.root: contract
    for contract in (
        _contract("ES", "E-mini S&P 500", "CME", "0.25", "12.50", "50", QUARTERLY),
        _contract("MES", "Micro E-mini S&P 500", "CME", "0.25", "1.25", "5", QUARTERLY),
        _contract("NQ", "E-mini Nasdaq-100", "CME", "0.25", "5.00", "20", QUARTERLY),
        _contract("MNQ", "Micro E-mini Nasdaq-100", "CME", "0.25", "0.50", "2", QUARTERLY),
        _contract("YM", "E-mini Dow", "CBOT", "1.00", "5.00", "5", QUARTERLY),
        _contract("MYM", "Micro E-mini Dow", "CBOT", "1.00", "0.50", "0.50", QUARTERLY),
        _contract("RTY", "E-mini Russell 2000", "CME", "0.10", "5.00", "50", QUARTERLY),
        _contract("M2K", "Micro E-mini Russell 2000", "CME", "0.10", "0.50", "5", QUARTERLY),
        _contract("CL", "Crude oil", "NYMEX", "0.01", "10.00", "1000", EVERY_MONTH),
        _contract("MCL", "Micro crude oil", "NYMEX", "0.01", "1.00", "100", EVERY_MONTH),
        _contract("GC", "Gold", "COMEX", "0.10", "10.00", "100", "GJMQVZ"),
        _contract("MGC", "Micro gold", "COMEX", "0.10", "1.00", "10", "GJMQVZ"),
    )
}


def month_code(month: int) -> str:
    """Return the futures month code (F for January ... Z for December)."""
    if not 1 <= month <= 12:
        raise ValueError(f"Month must be 1 to 12, not {month}.")
    return MONTH_CODES[month - 1]


def month_from_code(code: str) -> int:
    """Return the month number (1-12) of a futures month code."""
    index = MONTH_CODES.find(code.strip().upper()) if len(code.strip()) == 1 else -1
    if index < 0:
        raise ValueError(f"{code!r} is not a futures month code ({MONTH_CODES}).")
    return index + 1


def contract_symbol(root: str, year: int, month: int) -> str:
    """Return Tradovate's name of a contract: root, month code and one-digit year (`ESZ6`)."""
    return f"{root.strip().upper()}{month_code(month)}{year % 10}"


@dataclass(frozen=True)
class ParsedSymbol:
    """The parts of a TradingView or Tradovate futures symbol."""

    root: str
    month: int | None = None
    year: int | None = None  # as written: 6, 26 or 2026
    continuous: int | None = None  # 1 for `ES1!` (front month), 2 for `ES2!`
    exchange: str = ""

    @property
    def tradovate_symbol(self) -> str | None:
        """Return `ESZ6` for a dated contract, None for a bare root or a continuous symbol."""
        if self.month is None or self.year is None:
            return None
        return contract_symbol(self.root, self.year, self.month)


_CONTINUOUS = re.compile(r"^(?P<root>[A-Z0-9]+?)(?P<n>[0-9]+)!$")
_DATED = re.compile(r"^(?P<root>[A-Z0-9]*[A-Z])(?P<month>[FGHJKMNQUVXZ])(?P<year>[0-9]{1,2}|[0-9]{4})$")
_ROOT = re.compile(r"^[A-Z0-9]*[A-Z][A-Z0-9]*$")


def parse_symbol(text: str, known_roots: Collection[str] | None = None) -> ParsedSymbol:
    """Split a symbol (`ES`, `ESZ6`, `ESZ2026`, `ES1!`, `CME_MINI:ES1!`) into root, month, year."""
    raw = (text or "").strip().upper()
    exchange, _, symbol = raw.rpartition(":")
    # Some charting tools write futures as `/ESZ6`.
    symbol = symbol.strip().lstrip("/")
    known = {root.upper() for root in known_roots} if known_roots is not None else None
    if not symbol:
        raise SymbolError(f"Symbol {text!r} is empty: send a futures symbol such as ES, ESZ6 or ES1!.")
    parsed: ParsedSymbol | None = None
    if (match := _CONTINUOUS.match(symbol)) and _ROOT.match(match["root"]):
        parsed = ParsedSymbol(match["root"], continuous=int(match["n"]), exchange=exchange)
    elif known is not None and symbol in known:
        # A known root wins over reading its last letters as a month and year.
        parsed = ParsedSymbol(symbol, exchange=exchange)
    elif match := _DATED.match(symbol):
        parsed = ParsedSymbol(
            match["root"], month_from_code(match["month"]), int(match["year"]), exchange=exchange
        )
    elif _ROOT.match(symbol):
        parsed = ParsedSymbol(symbol, exchange=exchange)
    if parsed is None:
        raise SymbolError(f"Symbol {text!r} is not a futures symbol such as ES, ESZ6 or ES1!.")
    if known is not None and parsed.root not in known:
        listed = ", ".join(sorted(known)) or "none"
        raise SymbolError(f"Symbol {text!r} is not a supported contract (supported roots: {listed}).")
    return parsed


def symbol_root(text: str, known_roots: Collection[str] | None = None) -> str:
    """Return the contract root of a symbol (`CME_MINI:ES1!` -> `ES`, `M2KZ6` -> `M2K`)."""
    return parse_symbol(text, known_roots).root


def contract_for(text: str, contracts: Mapping[str, ContractInfo] = CONTRACTS) -> ContractInfo:
    """Return the contract a symbol belongs to, raising SymbolError for an unknown root."""
    return contracts[symbol_root(text, contracts.keys())]


def _check_tick(tick: Decimal) -> Decimal:
    tick = to_decimal(tick, name="tick size")
    if tick <= 0:
        raise ValueError(f"Tick size must be positive, not {tick}.")
    return tick


def round_to_tick(price: Decimal, tick: Decimal, mode: RoundMode = "nearest") -> Decimal:
    """Return `price` on the tick grid: nearest (half away from zero), up or down."""
    if mode not in _ROUNDINGS:
        raise ValueError(f"Rounding mode must be nearest, up or down, not {mode!r}.")
    price = to_decimal(price, name="price")
    tick = _check_tick(tick)
    with localcontext() as context:
        # Enough digits that price / tick is exact for any price a futures exchange quotes.
        context.prec = 60
        steps = (price / tick).quantize(Decimal(1), rounding=_ROUNDINGS[mode])
        return steps * tick


def is_on_tick(price: Decimal, tick: Decimal) -> bool:
    """Return whether `price` is a whole number of ticks."""
    with localcontext() as context:
        context.prec = 60
        return to_decimal(price, name="price") % _check_tick(tick) == 0


def offset_in_points(
    amount: Decimal | int,
    units: OffsetUnit | str,
    contract: ContractInfo,
    reference_price: Decimal,
    *,
    quantity: int | None = None,
) -> Decimal:
    """Return a distance in points: ticks x tick, points as given, percent of the price rounded to tick.

    Dollars are a loss on `quantity` contracts, converted to whole ticks (never more than the amount).
    """
    amount = to_decimal(amount, name="offset")
    if amount < 0:
        raise ValueError(f"An offset cannot be negative ({amount}).")
    unit = OffsetUnit.parse(units)
    if unit is OffsetUnit.TICKS:
        return amount * contract.tick_size
    if unit is OffsetUnit.POINTS:
        return amount
    if unit is OffsetUnit.PERCENT:
        reference = to_decimal(reference_price, name="reference price")
        return round_to_tick(abs(reference) * amount / 100, contract.tick_size, "nearest")
    if quantity is None:
        raise ValueError("A dollar offset needs the number of contracts it applies to.")
    return stop_ticks_for_dollar_loss(amount, contract, quantity) * contract.tick_size


def stop_ticks_for_dollar_loss(loss: Decimal | int, contract: ContractInfo, quantity: int) -> int:
    """Return floor(loss / (tick value x quantity)): the widest stop whose loss stays within `loss`."""
    loss = to_decimal(loss, name="dollar loss")
    if loss < 0:
        raise ValueError(f"A dollar loss cannot be negative ({loss}).")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
        raise ValueError(f"Quantity must be a positive whole number of contracts, not {quantity!r}.")
    return int((loss / (contract.tick_value * quantity)).to_integral_value(rounding=ROUND_FLOOR))
