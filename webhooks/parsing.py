"""Turn a TradingView alert body into a ParsedAlert or the reason it cannot be used; pure and hot path."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Final

MAX_NUMBER: Final = Decimal(10) ** 10
DECIMAL_PLACES: Final = 10
MAX_TICKER_LENGTH: Final = 64
MAX_ALERT_ID_LENGTH: Final = 200
MAX_JSON_DEPTH: Final = 20

ACTIONS: Final[dict[str, str]] = {
    "buy": "buy",
    "long": "buy",
    "sell": "sell",
    "short": "sell",
    "close": "close",
    "exit": "close",
    "flat": "close",
}
MARKET_POSITIONS: Final = frozenset({"long", "short", "flat"})

# Key (lower case) -> the alert attribute it feeds; aliases share a role.
_ROLES: Final[dict[str, str]] = {
    "action": "action",
    "ticker": "ticker",
    "symbol": "ticker",
    "contracts": "quantity",
    "quantity": "quantity",
    "qty": "quantity",
    "price": "price",
    "market_position": "market_position",
    "position_size": "position_size",
    "id": "alert_id",
    "alert_id": "alert_id",
    "time": "time",
    "comment": "comment",
}

_QUANTUM: Final = Decimal(1).scaleb(-DECIMAL_PLACES)
_NUMBER: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_PLACEHOLDER: Final = re.compile(r"\{\{([^{}]{1,100})\}\}")
# The placeholder together with the key it sits in, for bodies that are not valid JSON because of it.
_KEYED_PLACEHOLDER: Final = re.compile(r'"([^"\\]{1,60})"\s*:\s*"?[^",{}]{0,200}?(\{\{[^{}]{1,100}\}\})')
# TradingView's default strategy alert message:
# "<name> (<inputs>): order {{strategy.order.action}} @ {{strategy.order.contracts}} filled on {{ticker}}.
#  New strategy position is {{strategy.position_size}}"
_STRATEGY_MESSAGE: Final = re.compile(
    r"\border\s+(buy|sell)\s+@\s+(\S+)\s+filled\s+on\s+(\S+?)\.\s+new\s+strategy\s+position\s+is\s+(\S+)",
    re.IGNORECASE | re.ASCII,
)
# Characters PostgreSQL refuses in text and jsonb: NUL and unpaired surrogates (from \u escapes).
_UNSTORABLE: Final = re.compile("[\x00\ud800-\udfff]")
_TEXT_FORMATS: Final = (
    'expected buy, sell or close, optionally followed by a symbol and a quantity (e.g. "buy ES 2"), '
    'a JSON object with an "action", or TradingView\'s default strategy alert message'
)


@dataclass(frozen=True, slots=True)
class ParsedAlert:
    """An alert understood: normalized values plus every parsed field for storage."""

    action: str  # "buy", "sell" or "close"
    ticker: str | None = None
    quantity: Decimal | None = None
    price: Decimal | None = None
    market_position: str | None = None  # "long", "short" or "flat"; derived from position_size when absent
    position_size: Decimal | None = None
    alert_id: str | None = None
    fire_time: datetime | None = None
    comment: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AlertRejection:
    """An alert that cannot be used, with a reason a person understands and whatever was parsed."""

    reason: str
    fields: dict[str, Any] = field(default_factory=dict)


class _Rejected(Exception):
    """Internal: carries a rejection reason out of nested helpers."""


def parse_alert(body: bytes, content_type: str | None = None) -> ParsedAlert | AlertRejection:
    """Parse a TradingView alert body (JSON or plain text); never raises."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return AlertRejection("Body is not valid UTF-8")
    text = text.strip()
    if text.startswith("\ufeff"):
        text = text[1:].lstrip()
    if not text:
        return AlertRejection("Empty body")
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")

    # TradingView labels a body JSON only when it parses, so the body itself decides.
    first = text[0]
    labelled_json = content_type is not None and "json" in content_type.lower()
    if first in '{["' or labelled_json:
        try:
            value = json.loads(text, parse_int=_json_int, parse_float=_json_float, parse_constant=str)
        except RecursionError:
            return AlertRejection(_too_deep())
        except ValueError as error:
            if first == "{":
                return AlertRejection(_invalid_json(text, error))
        else:
            if isinstance(value, dict):
                return _from_object(value, text)
            if isinstance(value, str):
                return _from_text(_storable(value.strip()))
            return AlertRejection(
                f'The JSON body must be an object such as {{"action": "buy"}}, got {_json_kind(value)}'
            )
        # Not JSON after all: plain text such as "buy ES 2" is still understood.
        result = _from_text(text)
        if labelled_json and isinstance(result, AlertRejection):
            return AlertRejection(f"Body is sent as JSON but is not valid JSON. {result.reason}")
        return result
    return _from_text(text)


def alert_fingerprint(body: bytes) -> str:
    """Hex digest identifying an alert body for de-duplication; trailing whitespace is ignored."""
    return hashlib.sha256(body.rstrip()).hexdigest()


def _from_object(obj: dict[str, Any], text: str) -> ParsedAlert | AlertRejection:
    """Read a JSON object: case-insensitive keys, aliases, numbers as JSON numbers or numeric text."""
    # Only escapes or nesting can bring unstorable text or a dangerous depth: skip the walk otherwise.
    if "\\u" in text or text.count("{") + text.count("[") > 4:
        try:
            obj = _sanitized(obj, 1)
        except _Rejected as rejected:
            return AlertRejection(str(rejected))

    fields: dict[str, Any] = {}
    found: dict[str, tuple[str, Any]] = {}
    repeats: list[tuple[str, str, Any]] = []
    for key, value in obj.items():
        name = key.strip().lower()
        fields[name] = value
        role = _ROLES.get(name)
        if role is None or value is None:
            continue
        if role in found:
            repeats.append((role, key, value))
        else:
            found[role] = (key, value)

    try:
        if "action" not in found:
            raise _Rejected('Missing "action": expected buy, sell or close')
        values: dict[str, Any] = {}
        for role, parser in _ROLE_PARSERS.items():
            item = found.get(role)
            if item is not None:
                values[role] = parser(*item)
        for role, key, value in repeats:
            first_key, first_value = found[role]
            if _ROLE_PARSERS[role](key, value) != values[role]:
                raise _Rejected(
                    f'"{first_key}" and "{key}" disagree ({_show(first_value)} and {_show(value)}): '
                    "send only one of them"
                )
        market_position = _market_position(values.get("market_position"), values.get("position_size"), found)
    except _Rejected as rejected:
        return AlertRejection(str(rejected), fields)

    action = values["action"]
    return ParsedAlert(
        action="close" if market_position == "flat" else action,
        ticker=values.get("ticker"),
        quantity=values.get("quantity"),
        price=values.get("price"),
        market_position=market_position,
        position_size=values.get("position_size"),
        alert_id=values.get("alert_id"),
        fire_time=values.get("time"),
        comment=values.get("comment"),
        fields=fields,
    )


def _from_text(text: str) -> ParsedAlert | AlertRejection:
    """Read a plain-text alert: "buy ES 2" or TradingView's default strategy message."""
    if "{{" in text:
        match = _PLACEHOLDER.search(text)
        if match is not None:
            return AlertRejection(_placeholder_reason(match.group(0), None))
    words = text.split()
    if len(words) <= 3:
        action = ACTIONS.get(words[0].lower()) if words else None
        if action is not None:
            return _from_words(action, words)
    match = _STRATEGY_MESSAGE.search(text)
    if match is not None:
        return _from_strategy_message(text, match)
    return AlertRejection(f"Could not read the alert {_show(text)}: {_TEXT_FORMATS}")


def _from_words(action: str, words: list[str]) -> ParsedAlert | AlertRejection:
    """Read "<action> [symbol] [quantity]"; the number is the quantity, the other word the symbol."""
    fields: dict[str, Any] = {"action": words[0]}
    for word in words[1:]:
        slot = "quantity" if _NUMBER.fullmatch(word) else "ticker"
        if slot in fields:
            return AlertRejection(f"Could not read the alert {_show(' '.join(words))}: {_TEXT_FORMATS}")
        fields[slot] = word
    try:
        quantity = _parse_positive("quantity", fields["quantity"]) if "quantity" in fields else None
        ticker = _parse_ticker("symbol", fields["ticker"]) if "ticker" in fields else None
    except _Rejected as rejected:
        return AlertRejection(str(rejected), fields)
    return ParsedAlert(action=action, ticker=ticker, quantity=quantity, fields=fields)


def _from_strategy_message(text: str, match: re.Match[str]) -> ParsedAlert | AlertRejection:
    """Read TradingView's default strategy alert message."""
    action_word, quantity_text, ticker_text, position_text = match.groups()
    position_text = position_text.rstrip(".")
    fields: dict[str, Any] = {
        "strategy": text[: match.start()].strip().rstrip(":").rstrip(),
        "action": action_word,
        "contracts": quantity_text,
        "ticker": ticker_text,
        "position_size": position_text,
    }
    try:
        quantity = _parse_positive("contracts", quantity_text)
        ticker = _parse_ticker("ticker", ticker_text)
        position_size = _parse_signed("position_size", position_text)
    except _Rejected as rejected:
        return AlertRejection(str(rejected), fields)
    market_position = _position_side(position_size)
    return ParsedAlert(
        action="close" if market_position == "flat" else action_word.lower(),
        ticker=ticker,
        quantity=quantity,
        market_position=market_position,
        position_size=position_size,
        fields=fields,
    )


def _parse_action(key: str, value: Any) -> str:
    """Normalize an action word to buy, sell or close."""
    if isinstance(value, str):
        _reject_placeholder(key, value)
        action = ACTIONS.get(value.strip().lower())
        if action is not None:
            return action
    raise _Rejected(f'"{key}" must be buy, sell or close (or long, short, exit, flat), got {_show(value)}')


def _parse_positive(key: str, value: Any) -> Decimal:
    """A number greater than zero; zero is a mistake, not "unset"."""
    number = _number(key, value)
    if number is None or not number > 0:
        raise _Rejected(f'"{key}" must be a positive number, got {_show(value)}')
    number = _bounded(key, value, number)
    if not number:
        raise _Rejected(f'"{key}" is too small, got {_show(value)} (at most {DECIMAL_PLACES} decimal places)')
    return number


def _parse_signed(key: str, value: Any) -> Decimal:
    """Any number, sign kept."""
    number = _number(key, value)
    if number is None:
        raise _Rejected(f'"{key}" must be a number, got {_show(value)}')
    return _bounded(key, value, number)


def _parse_ticker(key: str, value: Any) -> str | None:
    """Symbol text as sent; resolving it to a contract is the recorder's job."""
    return _short_text(key, value, MAX_TICKER_LENGTH)


def _parse_alert_id(key: str, value: Any) -> str | None:
    """Idempotency key as text."""
    return _short_text(key, value, MAX_ALERT_ID_LENGTH)


def _parse_market_position(key: str, value: Any) -> str | None:
    """long, short or flat."""
    if isinstance(value, str):
        _reject_placeholder(key, value)
        position = value.strip().lower()
        if position in MARKET_POSITIONS:
            return position
        if not position:
            return None
    raise _Rejected(f'"{key}" must be long, short or flat, got {_show(value)}')


def _parse_time(key: str, value: Any) -> datetime | None:
    """ISO 8601 time as an aware UTC datetime; a time without offset is UTC, as TradingView's are."""
    if isinstance(value, str):
        _reject_placeholder(key, value)
        stamp = value.strip()
        if not stamp:
            return None
        try:
            moment = datetime.fromisoformat(stamp)
            if moment.tzinfo is None:
                return moment.replace(tzinfo=UTC)
            return moment.astimezone(UTC)
        except (ValueError, OverflowError):
            pass
    raise _Rejected(f'"{key}" must be an ISO 8601 time such as 2019-08-27T09:56:00Z, got {_show(value)}')


def _parse_comment(key: str, value: Any) -> str | None:
    """Free text; placeholders are allowed in it because nothing acts on it."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _Rejected(f'"{key}" must be text, got {_show(value)}')


_ROLE_PARSERS: Final = {
    "action": _parse_action,
    "quantity": _parse_positive,
    "ticker": _parse_ticker,
    "price": _parse_positive,
    "market_position": _parse_market_position,
    "position_size": _parse_signed,
    "alert_id": _parse_alert_id,
    "time": _parse_time,
    "comment": _parse_comment,
}


def _market_position(
    given: str | None, position_size: Decimal | None, found: dict[str, tuple[str, Any]]
) -> str | None:
    """The position after the order: as given, else from the sign of position_size; both must agree."""
    derived = _position_side(position_size)
    if given is None:
        return derived
    if derived is not None and derived != given:
        position_key, position_value = found["market_position"]
        size_key, size_value = found["position_size"]
        raise _Rejected(
            f'"{position_key}" is {_show(position_value)} but "{size_key}" is {_show(size_value)}: '
            "they disagree"
        )
    return given


def _position_side(position_size: Decimal | None) -> str | None:
    """long, short or flat from a signed size."""
    if position_size is None:
        return None
    if position_size > 0:
        return "long"
    return "short" if position_size < 0 else "flat"


def _number(key: str, value: Any) -> Decimal | None:
    """A Decimal from a JSON number or numeric text, or None when it is not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # JSON floats are finite here: the decoder keeps overflowing literals as text.
        return Decimal(repr(value))
    if isinstance(value, str):
        _reject_placeholder(key, value)
        digits = value.strip()
        if _NUMBER.fullmatch(digits):
            return Decimal(digits)
    return None


def _bounded(key: str, value: Any, number: Decimal) -> Decimal:
    """Refuse numbers too large to store; keep at most DECIMAL_PLACES decimal places."""
    if abs(number) >= MAX_NUMBER:
        raise _Rejected(f'"{key}" is too large, got {_show(value)} (the limit is {MAX_NUMBER:f})')
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -DECIMAL_PLACES:
        return number.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN)
    return number


def _short_text(key: str, value: Any, max_length: int) -> str | None:
    """Text (or a whole number) of bounded length; blank is absent."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _Rejected(f'"{key}" must be text, got {_show(value)}')
    _reject_placeholder(key, value)
    text = value.strip()
    if len(text) > max_length:
        raise _Rejected(f'"{key}" is too long: {len(text)} characters, at most {max_length}')
    return text or None


def _reject_placeholder(key: str | None, value: str) -> None:
    """Refuse a value that still holds a TradingView placeholder such as {{ticker}}."""
    if "{{" in value:
        match = _PLACEHOLDER.search(value)
        if match is not None:
            raise _Rejected(_placeholder_reason(match.group(0), key))


def _placeholder_reason(placeholder: str, key: str | None) -> str:
    """Explain an unfilled placeholder and what to do about it."""
    where = f' in "{key}"' if key else ""
    if placeholder[2:].strip().startswith("strategy."):
        advice = "the alert message must be sent from a strategy alert"
    else:
        advice = "TradingView fills placeholders only when the alert fires; check its spelling"
    return f"Unfilled TradingView placeholder {placeholder}{where}: {advice}"


def _invalid_json(text: str, error: ValueError) -> str:
    """Explain a body that looks like JSON but does not parse, naming an unfilled placeholder if any."""
    if "{{" in text:
        match = _KEYED_PLACEHOLDER.search(text)
        if match is not None:
            return _placeholder_reason(match.group(2), match.group(1))
        match = _PLACEHOLDER.search(text)
        if match is not None:
            return _placeholder_reason(match.group(0), None)
    if isinstance(error, json.JSONDecodeError):
        where = f"{error.msg} at line {error.lineno} column {error.colno}"
    else:
        where = str(error)
    return (
        f"Body is not valid JSON: {where}. Check the alert message for a missing or curly quote, "
        "a missing comma or a trailing comma"
    )


def _sanitized(value: Any, depth: int) -> Any:
    """Copy of a decoded JSON value with unstorable characters replaced; refuses deep nesting."""
    if isinstance(value, str):
        return _storable(value)
    if isinstance(value, dict):
        if depth > MAX_JSON_DEPTH:
            raise _Rejected(_too_deep())
        return {_storable(key): _sanitized(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        if depth > MAX_JSON_DEPTH:
            raise _Rejected(_too_deep())
        return [_sanitized(item, depth + 1) for item in value]
    return value


def _storable(text: str) -> str:
    """Text with NUL and unpaired surrogates replaced by U+FFFD, so databases accept it."""
    return _UNSTORABLE.sub("\ufffd", text)


def _too_deep() -> str:
    """Reason for JSON nested beyond MAX_JSON_DEPTH."""
    return f"The JSON body is nested too deeply (more than {MAX_JSON_DEPTH} levels)"


def _json_int(digits: str) -> int | str:
    """Decode a JSON integer; one too long for Python's int conversion stays text."""
    try:
        return int(digits)
    except ValueError:
        return digits


def _json_float(digits: str) -> float | str:
    """Decode a JSON float; one that overflows to infinity stays text, so fields stay valid JSON."""
    number = float(digits)
    return number if number - number == 0 else digits


def _json_kind(value: Any) -> str:
    """Name the JSON type of a decoded value for a message."""
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return "a number" if isinstance(value, int | float) else "text"


def _show(value: Any) -> str:
    """A value as it would look in JSON, shortened for a message."""
    shown = json.dumps(value, ensure_ascii=False)
    return shown if len(shown) <= 60 else f"{shown[:57]}..."
