"""Alert parsing: real TradingView bodies, every rejection reason, and a fuzz test that it never raises."""

import dataclasses
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhooks.parsing import (
    MAX_ALERT_ID_LENGTH,
    MAX_TICKER_LENGTH,
    AlertRejection,
    ParsedAlert,
    alert_fingerprint,
    parse_alert,
)

ALERTS = Path(__file__).parent / "alerts"
FUZZ = settings(max_examples=150, deadline=None, database=None)


def tradingview_post(name: str) -> tuple[bytes, str]:
    """A fixture body with the content type TradingView would send: JSON only when the message parses."""
    body = (ALERTS / name).read_bytes()
    try:
        json.loads(body)
    except ValueError:
        return body, "text/plain; charset=utf-8"
    return body, "application/json; charset=utf-8"


def parsed(body: bytes, content_type: str | None = None) -> ParsedAlert:
    """Parse a body that must be understood."""
    result = parse_alert(body, content_type)
    assert isinstance(result, ParsedAlert), result
    return result


def rejected(body: bytes, content_type: str | None = None) -> str:
    """Parse a body that must be rejected and return the reason."""
    result = parse_alert(body, content_type)
    assert isinstance(result, AlertRejection), result
    return result.reason


EXPECTED_ALERTS = {
    "ready_message_entry_long.json": {
        "action": "buy",
        "ticker": "ES1!",
        "quantity": Decimal("1"),
        "price": Decimal("5123.25"),
        "market_position": "long",
        "position_size": Decimal("1"),
        "alert_id": "ES1!-Long-2024-03-01T14:30:05Z",
        "fire_time": datetime(2024, 3, 1, 14, 30, 5, tzinfo=UTC),
        "comment": None,
    },
    "ready_message_exit_to_flat.json": {
        "action": "close",
        "ticker": "ES1!",
        "quantity": Decimal("1"),
        "price": Decimal("5131.5"),
        "market_position": "flat",
        "position_size": Decimal("0"),
        "alert_id": "ES1!-Long TP-2024-03-01T15:02:11Z",
        "fire_time": datetime(2024, 3, 1, 15, 2, 11, tzinfo=UTC),
        "comment": None,
    },
    "ready_message_entry_short.json": {
        "action": "sell",
        "ticker": "MNQ1!",
        "quantity": Decimal("2"),
        "price": Decimal("18250.75"),
        "market_position": "short",
        "position_size": Decimal("-2"),
        "alert_id": "MNQ1!-Short-2024-03-04T09:45:00Z",
        "fire_time": datetime(2024, 3, 4, 9, 45, tzinfo=UTC),
        "comment": None,
    },
    "ready_message_reversal.json": {
        "action": "buy",
        "ticker": "MNQ1!",
        "quantity": Decimal("3"),
        "price": Decimal("18190"),
        "market_position": "long",
        "position_size": Decimal("1"),
        "alert_id": "MNQ1!-Reverse-2024-03-04T11:20:00Z",
        "fire_time": datetime(2024, 3, 4, 11, 20, tzinfo=UTC),
        "comment": None,
    },
    "custom_mixed_case_keys.json": {
        "action": "buy",
        "ticker": "CME_MINI:MES1!",
        "quantity": Decimal("3"),
        "price": None,
        "market_position": None,
        "position_size": None,
        "alert_id": None,
        "fire_time": None,
        "comment": "opening range breakout",
    },
    "custom_exit.json": {
        "action": "close",
        "ticker": "ES1!",
        "quantity": None,
        "price": None,
        "market_position": None,
        "position_size": None,
        "alert_id": None,
        "fire_time": None,
        "comment": "{{strategy.order.comment}}",
    },
    "custom_numbers_as_text.json": {
        "action": "sell",
        "ticker": "NQ1!",
        "quantity": Decimal("2"),
        "price": Decimal("18250.75"),
        "market_position": "short",
        "position_size": Decimal("-2"),
        "alert_id": "nq-42",
        "fire_time": datetime(2024, 3, 1, 14, 30, 0, 250000, tzinfo=UTC),
        "comment": None,
    },
    "plain_buy.txt": {"action": "buy", "ticker": None, "quantity": None},
    "plain_buy_es_2.txt": {"action": "buy", "ticker": "ES", "quantity": Decimal("2")},
    "plain_close.txt": {"action": "close", "ticker": None, "quantity": None},
    "plain_sell_mnq.txt": {"action": "sell", "ticker": "MNQ1!", "quantity": None},
    "strategy_default_buy.txt": {
        "action": "buy",
        "ticker": "ES1!",
        "quantity": Decimal("1"),
        "market_position": "long",
        "position_size": Decimal("1"),
    },
    "strategy_default_exit.txt": {
        "action": "close",
        "ticker": "ES1!",
        "quantity": Decimal("1"),
        "market_position": "flat",
        "position_size": Decimal("0"),
    },
    "strategy_default_reversal.txt": {
        "action": "sell",
        "ticker": "CME_MINI:MES1!",
        "quantity": Decimal("2"),
        "market_position": "short",
        "position_size": Decimal("-1"),
    },
}

EXPECTED_REJECTIONS = {
    "ready_message_from_indicator_alert.txt": (
        'Unfilled TradingView placeholder {{strategy.order.action}} in "action": '
        "the alert message must be sent from a strategy alert"
    ),
    "strategy_default_from_indicator_alert.txt": (
        "Unfilled TradingView placeholder {{strategy.order.action}}: "
        "the alert message must be sent from a strategy alert"
    ),
    "custom_zero_contracts.json": '"contracts" must be a positive number, got 0',
    "custom_trailing_comma.txt": (
        "Body is not valid JSON: Expecting property name enclosed in double quotes at line 4 column 1. "
        "Check the alert message for a missing or curly quote, a missing comma or a trailing comma"
    ),
}


def test_every_alert_fixture_has_an_expected_outcome():
    assert {path.name for path in ALERTS.iterdir()} == EXPECTED_ALERTS.keys() | EXPECTED_REJECTIONS.keys()


@pytest.mark.parametrize("name", sorted(EXPECTED_ALERTS))
def test_real_alert_bodies_parse_to_the_expected_alert(name):
    alert = parsed(*tradingview_post(name))

    assert {attribute: getattr(alert, attribute) for attribute in EXPECTED_ALERTS[name]} == EXPECTED_ALERTS[
        name
    ]


@pytest.mark.parametrize("name", sorted(EXPECTED_REJECTIONS))
def test_real_unusable_alert_bodies_are_rejected_with_a_reason(name):
    assert rejected(*tradingview_post(name)) == EXPECTED_REJECTIONS[name]


def test_the_ready_message_keeps_every_field_for_storage():
    alert = parsed(*tradingview_post("ready_message_entry_long.json"))

    assert alert.fields == {
        "action": "buy",
        "ticker": "ES1!",
        "contracts": 1,
        "price": 5123.25,
        "market_position": "long",
        "position_size": 1,
        "id": "ES1!-Long-2024-03-01T14:30:05Z",
        "time": "2024-03-01T14:30:05Z",
    }


def test_the_default_strategy_message_keeps_what_it_read_including_the_strategy_name():
    alert = parsed(*tradingview_post("strategy_default_reversal.txt"))

    assert alert.fields == {
        "strategy": "Supertrend Strategy (10, 3, close)",
        "action": "sell",
        "contracts": "2",
        "ticker": "CME_MINI:MES1!",
        "position_size": "-1",
    }


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "Empty body"),
        (b" \r\n\t", "Empty body"),
        (b'{"action": "buy", "ticker": "\xff"}', "Body is not valid UTF-8"),
        (b'{"ticker": "ES1!", "contracts": 1}', 'Missing "action": expected buy, sell or close'),
        (b'{"action": null}', 'Missing "action": expected buy, sell or close'),
        (
            b'{"action": "hold"}',
            '"action" must be buy, sell or close (or long, short, exit, flat), got "hold"',
        ),
        (b'{"action": 1}', '"action" must be buy, sell or close (or long, short, exit, flat), got 1'),
        (b'{"action": "buy", "contracts": "0"}', '"contracts" must be a positive number, got "0"'),
        (b'{"action": "buy", "qty": -1}', '"qty" must be a positive number, got -1'),
        (b'{"action": "buy", "quantity": "two"}', '"quantity" must be a positive number, got "two"'),
        (b'{"action": "buy", "contracts": ""}', '"contracts" must be a positive number, got ""'),
        (b'{"action": "buy", "contracts": true}', '"contracts" must be a positive number, got true'),
        (b'{"action": "buy", "contracts": "NaN"}', '"contracts" must be a positive number, got "NaN"'),
        (b'{"action": "buy", "contracts": NaN}', '"contracts" must be a positive number, got "NaN"'),
        (
            b'{"action": "buy", "contracts": 1e999}',
            '"contracts" is too large, got "1e999" (the limit is 10000000000)',
        ),
        (
            b'{"action": "buy", "contracts": 0.00000000001}',
            '"contracts" is too small, got 1e-11 (at most 10 decimal places)',
        ),
        (b'{"action": "buy", "price": 0}', '"price" must be a positive number, got 0'),
        (b'{"action": "buy", "price": [5000]}', '"price" must be a positive number, got [5000]'),
        (b'{"action": "buy", "position_size": "long"}', '"position_size" must be a number, got "long"'),
        (
            b'{"action": "buy", "market_position": "up"}',
            '"market_position" must be long, short or flat, got "up"',
        ),
        (
            b'{"action": "buy", "market_position": "long", "position_size": -1}',
            '"market_position" is "long" but "position_size" is -1: they disagree',
        ),
        (
            b'{"action": "buy", "time": "yesterday"}',
            '"time" must be an ISO 8601 time such as 2019-08-27T09:56:00Z, got "yesterday"',
        ),
        (
            b'{"action": "buy", "time": 1709303405}',
            '"time" must be an ISO 8601 time such as 2019-08-27T09:56:00Z, got 1709303405',
        ),
        (
            b'{"action": "buy", "time": "9999-12-31T23:59:59-05:00"}',
            '"time" must be an ISO 8601 time such as 2019-08-27T09:56:00Z, got "9999-12-31T23:59:59-05:00"',
        ),
        (b'{"action": "buy", "ticker": ["ES"]}', '"ticker" must be text, got ["ES"]'),
        (b'{"action": "buy", "id": {"n": 1}}', '"id" must be text, got {"n": 1}'),
        (b'{"action": "buy", "comment": {"n": 1}}', '"comment" must be text, got {"n": 1}'),
        (
            b'{"action": "buy", "qty": 2, "contracts": "3"}',
            '"qty" and "contracts" disagree (2 and "3"): send only one of them',
        ),
        (
            b'{"Action": "buy", "action": "sell"}',
            '"Action" and "action" disagree ("buy" and "sell"): send only one of them',
        ),
        (
            b'{"ticker": "ES1!", "symbol": "NQ1!", "action": "buy"}',
            '"ticker" and "symbol" disagree ("ES1!" and "NQ1!"): send only one of them',
        ),
        (b'[{"action": "buy"}]', 'The JSON body must be an object such as {"action": "buy"}, got a list'),
        (
            b'{"action": "buy", "x": ' + b"[" * 30 + b"]" * 30 + b"}",
            "The JSON body is nested too deeply (more than 20 levels)",
        ),
        (b'{"a": ' * 50_000, "The JSON body is nested too deeply (more than 20 levels)"),
        (b"buy ES 0", '"quantity" must be a positive number, got "0"'),
        (b"buy ES -2", '"quantity" must be a positive number, got "-2"'),
        (
            b"My strategy (20, 2): order buy @ 0 filled on ES1!. New strategy position is 0",
            '"contracts" must be a positive number, got "0"',
        ),
        (
            b"My strategy: order buy @ 1 filled on ES1!. New strategy position is up",
            '"position_size" must be a number, got "up"',
        ),
    ],
)
def test_unusable_bodies_are_rejected_with_a_reason_a_person_understands(body, reason):
    assert rejected(body) == reason


@pytest.mark.parametrize(
    "body",
    [b"hello world", b"buy ES NQ", b"buy 1 2", b"buy ES 2 now", b"123", b"[not json", b'"unterminated'],
)
def test_text_that_is_no_alert_format_is_rejected_with_the_formats_that_work(body):
    assert rejected(body, "text/plain").startswith(f"Could not read the alert {json.dumps(body.decode())}: ")
    assert 'e.g. "buy ES 2"' in rejected(body, "text/plain")


@pytest.mark.parametrize(("body", "kind"), [(b"12", "a number"), (b"null", "null"), (b"true", "true")])
def test_a_json_body_that_is_not_an_object_is_rejected(body, kind):
    assert rejected(body, "application/json") == (
        f'The JSON body must be an object such as {{"action": "buy"}}, got {kind}'
    )


def test_a_body_labelled_json_that_is_neither_json_nor_an_alert_says_so():
    assert rejected(b"hello", "application/json").startswith(
        'Body is sent as JSON but is not valid JSON. Could not read the alert "hello"'
    )


def test_a_long_body_is_quoted_only_in_part_in_the_reason():
    reason = rejected(b"x" * 10_000)

    assert len(reason) < 400
    assert '"xxxxxxxx' in reason


def test_a_rejection_keeps_the_parsed_fields_for_storage():
    result = parse_alert(b'{"Action": "buy", "Contracts": 0, "Note": "x"}', "application/json")

    assert result == AlertRejection(
        '"Contracts" must be a positive number, got 0', {"action": "buy", "contracts": 0, "note": "x"}
    )


@pytest.mark.parametrize(
    "body",
    [
        b'{"action": "buy", "ticker": "ES1!", "contracts": 2}',
        b'{"ACTION": "BUY", "TICKER": "ES1!", "CONTRACTS": 2}',
        b'{"Action": "Buy", "Ticker": "ES1!", "Contracts": 2}',
        b'{" action ": "buy", "Symbol": "ES1!", "QTY": 2}',
        b'{"action": "long", "symbol": "ES1!", "quantity": 2}',
    ],
)
def test_keys_are_case_insensitive_and_aliases_mean_the_same(body):
    alert = parsed(body)

    assert (alert.action, alert.ticker, alert.quantity) == ("buy", "ES1!", Decimal("2"))


@pytest.mark.parametrize(
    "quantity",
    ["2", '"2"', '" 2 "', '"2.0"', "2.0", '"+2"', '"2e0"', '"0.2e1"'],
)
def test_numbers_may_arrive_as_json_numbers_or_numeric_text(quantity):
    alert = parsed(f'{{"action": "buy", "contracts": {quantity}}}'.encode())

    assert alert.quantity == Decimal("2")


def test_decimal_numbers_keep_their_exact_value():
    alert = parsed(b'{"action": "buy", "price": 5123.1, "position_size": "-0.5", "contracts": "0.1"}')

    assert (alert.price, alert.position_size, alert.quantity) == (
        Decimal("5123.1"),
        Decimal("-0.5"),
        Decimal("0.1"),
    )


def test_numbers_beyond_ten_decimal_places_are_rounded_to_ten():
    alert = parsed(b'{"action": "buy", "price": "1.123456789012345"}')

    assert alert.price == Decimal("1.1234567890")


@pytest.mark.parametrize("word", ["buy", "BUY", "Long", "long"])
def test_buy_and_long_mean_buy(word):
    assert parsed(f'{{"action": "{word}"}}'.encode()).action == "buy"
    assert parsed(word.encode()).action == "buy"


@pytest.mark.parametrize("word", ["sell", "SELL", "Short", "short"])
def test_sell_and_short_mean_sell(word):
    assert parsed(f'{{"action": "{word}"}}'.encode()).action == "sell"
    assert parsed(word.encode()).action == "sell"


@pytest.mark.parametrize("word", ["close", "Close", "EXIT", "exit", "flat", "Flat"])
def test_close_exit_and_flat_mean_close(word):
    assert parsed(f'{{"action": "{word}"}}'.encode()).action == "close"
    assert parsed(word.encode()).action == "close"


@pytest.mark.parametrize("action", ["buy", "sell"])
def test_a_flat_market_position_makes_the_alert_a_close(action):
    alert = parsed(f'{{"action": "{action}", "market_position": "FLAT"}}'.encode())

    assert (alert.action, alert.market_position) == ("close", "flat")


def test_a_position_size_of_zero_without_market_position_makes_the_alert_a_close():
    alert = parsed(b'{"action": "buy", "contracts": 1, "position_size": 0}')

    assert (alert.action, alert.market_position, alert.position_size) == ("close", "flat", Decimal("0"))


def test_market_position_is_derived_from_the_sign_of_position_size():
    assert parsed(b'{"action": "buy", "position_size": 3}').market_position == "long"
    assert parsed(b'{"action": "sell", "position_size": "-3"}').market_position == "short"


def test_a_sell_that_leaves_a_long_position_stays_a_sell():
    alert = parsed(b'{"action": "sell", "contracts": 1, "market_position": "long", "position_size": 1}')

    assert (alert.action, alert.market_position) == ("sell", "long")


def test_zero_contracts_is_a_mistake_not_an_unset_quantity():
    assert rejected(b'{"action": "buy", "contracts": 0}') == '"contracts" must be a positive number, got 0'


def test_null_and_missing_optional_values_mean_unset():
    alert = parsed(b'{"action": "buy", "contracts": null, "price": null, "ticker": null, "time": null}')

    assert (alert.quantity, alert.price, alert.ticker, alert.fire_time) == (None, None, None, None)


def test_an_alias_left_null_gives_way_to_the_one_that_is_set():
    assert parsed(b'{"action": "buy", "contracts": null, "qty": 4}').quantity == Decimal("4")


def test_aliases_that_agree_are_accepted():
    alert = parsed(b'{"action": "buy", "contracts": 2, "qty": "2.0", "id": "a", "alert_id": "a"}')

    assert (alert.quantity, alert.alert_id) == (Decimal("2"), "a")


def test_unknown_keys_are_ignored_but_kept_in_the_fields():
    alert = parsed(b'{"action": "buy", "Interval": "5", "plot": {"rsi": 31.5}}')

    assert alert.fields == {"action": "buy", "interval": "5", "plot": {"rsi": 31.5}}


def test_a_numeric_alert_id_and_ticker_become_text():
    alert = parsed(b'{"action": "buy", "id": 12345, "ticker": 7203}')

    assert (alert.alert_id, alert.ticker) == ("12345", "7203")


def test_over_long_ticker_and_alert_id_are_rejected():
    long_ticker = json.dumps({"action": "buy", "ticker": "X" * (MAX_TICKER_LENGTH + 1)}).encode()
    long_id = json.dumps({"action": "buy", "id": "X" * (MAX_ALERT_ID_LENGTH + 1)}).encode()

    assert rejected(long_ticker) == f'"ticker" is too long: {MAX_TICKER_LENGTH + 1} characters, at most 64'
    assert rejected(long_id) == f'"id" is too long: {MAX_ALERT_ID_LENGTH + 1} characters, at most 200'


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2019-08-27T09:56:00Z", datetime(2019, 8, 27, 9, 56, tzinfo=UTC)),
        ("2019-08-27T09:56:00.123Z", datetime(2019, 8, 27, 9, 56, 0, 123000, tzinfo=UTC)),
        ("2019-08-27T11:56:00+02:00", datetime(2019, 8, 27, 9, 56, tzinfo=UTC)),
        ("2019-08-27T09:56:00", datetime(2019, 8, 27, 9, 56, tzinfo=UTC)),
        (" 2019-08-27 09:56:00Z ", datetime(2019, 8, 27, 9, 56, tzinfo=UTC)),
    ],
)
def test_the_fire_time_is_an_aware_utc_datetime(stamp, expected):
    fire_time = parsed(json.dumps({"action": "buy", "time": stamp}).encode()).fire_time

    assert fire_time == expected
    assert fire_time.utcoffset().total_seconds() == 0


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            b'{"action": "{{strategy.order.action}}", "ticker": "ES1!"}',
            'Unfilled TradingView placeholder {{strategy.order.action}} in "action": '
            "the alert message must be sent from a strategy alert",
        ),
        (
            b'{"action": "buy", "contracts": "{{strategy.order.contracts}}"}',
            'Unfilled TradingView placeholder {{strategy.order.contracts}} in "contracts": '
            "the alert message must be sent from a strategy alert",
        ),
        (
            b'{"action": "buy", "contracts": {{strategy.order.contracts}}}',
            'Unfilled TradingView placeholder {{strategy.order.contracts}} in "contracts": '
            "the alert message must be sent from a strategy alert",
        ),
        (
            b'{"action": "buy", "market_position": "{{strategy.market_position}}"}',
            'Unfilled TradingView placeholder {{strategy.market_position}} in "market_position": '
            "the alert message must be sent from a strategy alert",
        ),
        (
            b'{"action": "buy", "id": "{{ticker}}-{{strategy.order.id}}"}',
            'Unfilled TradingView placeholder {{ticker}} in "id": '
            "TradingView fills placeholders only when the alert fires; check its spelling",
        ),
        (
            b'{"action": "buy", "ticker": "{{tickr}}"}',
            'Unfilled TradingView placeholder {{tickr}} in "ticker": '
            "TradingView fills placeholders only when the alert fires; check its spelling",
        ),
        (
            b'{"action": "buy", "time": "{{timenow}}"}',
            'Unfilled TradingView placeholder {{timenow}} in "time": '
            "TradingView fills placeholders only when the alert fires; check its spelling",
        ),
        (
            b'{"action": "buy", "price": {{close}}}',
            'Unfilled TradingView placeholder {{close}} in "price": '
            "TradingView fills placeholders only when the alert fires; check its spelling",
        ),
        (
            b"{{strategy.order.action}} {{ticker}}",
            "Unfilled TradingView placeholder {{strategy.order.action}}: "
            "the alert message must be sent from a strategy alert",
        ),
        (
            b"buy {{ticker}} 1",
            "Unfilled TradingView placeholder {{ticker}}: "
            "TradingView fills placeholders only when the alert fires; check its spelling",
        ),
    ],
)
def test_unfilled_placeholders_are_named_with_what_to_do(body, reason):
    assert rejected(body) == reason


def test_a_placeholder_in_the_comment_does_not_stop_the_alert():
    assert parsed(b'{"action": "buy", "comment": "{{strategy.order.comment}}"}').comment == (
        "{{strategy.order.comment}}"
    )


def test_the_body_decides_json_or_text_whatever_the_content_type_says():
    as_text = parsed(b'{"action": "sell", "ticker": "NQ1!"}', "text/plain")
    as_json = parsed(b"sell NQ1!", "application/json")

    assert (as_text.action, as_text.ticker) == ("sell", "NQ1!")
    assert (as_json.action, as_json.ticker) == ("sell", "NQ1!")


def test_a_json_string_body_is_read_as_a_plain_text_alert():
    alert = parsed(b'"buy ES 2"', "application/json")

    assert (alert.action, alert.ticker, alert.quantity) == ("buy", "ES", Decimal("2"))


@pytest.mark.parametrize("body", [b"buy 2", b"buy 2 ES", b"  buy\n ES\t2  ", b"\xef\xbb\xbfbuy ES 2"])
def test_plain_text_finds_the_quantity_and_symbol_in_either_order(body):
    alert = parsed(body)

    assert alert.action == "buy"
    assert alert.quantity == Decimal("2")
    assert alert.ticker in (None, "ES")


def test_a_utf8_bom_before_json_is_ignored():
    assert parsed(b'\xef\xbb\xbf{"action": "buy"}').action == "buy"


def test_values_a_database_cannot_store_are_made_storable():
    alert = parsed(
        b'{"action": "buy", "comment": "a\\u0000b\\ud800c", "big": 1e999, "nan": NaN, "n": -Infinity}'
    )

    assert alert.comment == "a\ufffdb\ufffdc"
    assert alert.fields["big"] == "1e999"
    stored = json.dumps(alert.fields, allow_nan=False, ensure_ascii=False)
    assert "\\u0000" not in stored
    stored.encode("utf-8")


def test_a_nul_byte_in_a_text_body_never_reaches_the_ticker():
    assert parsed(b"buy ES\x00 2").ticker == "ES\ufffd"


def test_an_integer_too_long_for_python_is_kept_as_text():
    alert = parsed(b'{"action": "buy", "big": ' + b"9" * 5000 + b"}")

    assert alert.fields["big"] == "9" * 5000


def test_parsed_alerts_are_immutable():
    alert = parsed(b"buy")

    with pytest.raises(dataclasses.FrozenInstanceError):
        alert.action = "sell"


def test_the_fingerprint_ignores_trailing_whitespace_only():
    body = b'{"action": "buy", "ticker": "ES1!"}'

    assert alert_fingerprint(body) == alert_fingerprint(body + b"\r\n  \n")
    assert alert_fingerprint(body) != alert_fingerprint(b" " + body)
    assert alert_fingerprint(body) != alert_fingerprint(body.replace(b"buy", b"BUY"))
    assert len(alert_fingerprint(body)) == 64
    int(alert_fingerprint(body), 16)


# Fuzzing: whatever arrives, the parser answers with one of its two types and never raises.


def assert_storable(value: object) -> None:
    """Valid strict JSON that encodes to UTF-8 with no NUL: what PostgreSQL jsonb and text accept."""
    stored = json.dumps(value, allow_nan=False, ensure_ascii=False)
    assert "\\u0000" not in stored
    stored.encode("utf-8")


def assert_well_formed(result: object) -> None:
    """The result is a ParsedAlert or AlertRejection whose values can be stored and shown."""
    assert isinstance(result, ParsedAlert | AlertRejection)
    assert_storable(result.fields)
    if isinstance(result, AlertRejection):
        assert result.reason
        assert_storable(result.reason)
        return
    assert result.action in ("buy", "sell", "close")
    assert result.quantity is None or result.quantity > 0
    assert result.price is None or result.price > 0
    assert result.market_position in (None, "long", "short", "flat")
    assert result.fire_time is None or result.fire_time.utcoffset().total_seconds() == 0
    assert result.ticker is None or 0 < len(result.ticker) <= MAX_TICKER_LENGTH
    assert result.alert_id is None or 0 < len(result.alert_id) <= MAX_ALERT_ID_LENGTH
    assert_storable([result.ticker, result.alert_id, result.comment])
    for number in (result.quantity, result.price, result.position_size):
        assert number is None or (number.is_finite() and abs(number) < 10**10)


every_character = st.characters(codec=None, categories=None)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(every_character, max_size=20)
    | st.sampled_from(
        ["buy", "SELL", "close", "flat", "long", "0", "-1", "1e3", "{{ticker}}", "2024-03-01T14:30:05Z"]
    )
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
known_keys = st.sampled_from(
    [
        "action",
        "Action",
        "ticker",
        "symbol",
        "contracts",
        "QTY",
        "quantity",
        "price",
        "market_position",
        "position_size",
        "id",
        "alert_id",
        "time",
        "comment",
    ]
)
content_types = st.sampled_from([None, "", "application/json", "text/plain; charset=utf-8", "JSON"])


@FUZZ
@given(st.binary(max_size=300), content_types)
def test_random_bytes_never_make_the_parser_raise(body, content_type):
    assert_well_formed(parse_alert(body, content_type))


@FUZZ
@given(json_values, st.booleans(), content_types)
def test_random_json_values_never_make_the_parser_raise(value, ascii_only, content_type):
    body = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    assert_well_formed(parse_alert(body, content_type))


@FUZZ
@given(st.dictionaries(known_keys, json_values, max_size=8), content_types)
def test_random_values_under_the_known_keys_never_make_the_parser_raise(obj, content_type):
    assert_well_formed(parse_alert(json.dumps(obj).encode(), content_type))


words = st.sampled_from(
    [
        "buy",
        "Sell",
        "CLOSE",
        "exit",
        "ES",
        "ES1!",
        "2",
        "0",
        "-1",
        "1e9999",
        "order",
        "@",
        "filled",
        "on",
        "New",
    ]
)


@FUZZ
@given(
    st.lists(words | st.text(every_character, max_size=6), max_size=6).map(" ".join),
    st.text(every_character, max_size=20),
    content_types,
)
def test_random_text_never_makes_the_parser_raise(text, name, content_type):
    assert_well_formed(parse_alert(text.encode("utf-8", "surrogatepass"), content_type))
    message = f"{name}: order {text} filled on {text}. New strategy position is {text}"
    assert_well_formed(parse_alert(message.encode("utf-8", "surrogatepass"), content_type))
