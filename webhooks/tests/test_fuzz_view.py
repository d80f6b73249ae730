"""Whatever arrives at the webhook, the answer is one of the contract's and never a 500; nothing is lost."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trading.models import Signal

FUZZ = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
KEYS = st.sampled_from(
    ["action", "Action", "ticker", "symbol", "contracts", "qty", "price", "market_position", "position_size",
     "id", "alert_id", "time", "comment", "", "\u0000", "\ud800x"]
)  # fmt: skip
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False),
    st.sampled_from(
        ["buy", "sell", "close", "long", "flat", "ES1!", "NQZ6", "{{close}}", "2026-03-02T15:00:00Z", "-0"]
    ),
    st.text(max_size=40),
)
JSON_VALUES = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=12,
)
ALERT_OBJECTS = st.dictionaries(KEYS, JSON_VALUES, max_size=8)
BODIES = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    ALERT_OBJECTS.map(lambda obj: json.dumps(obj).encode()),
    st.builds(
        lambda action, symbol, qty: f"{action} {symbol} {qty}".encode(),
        st.sampled_from(["buy", "SELL", "close", "exit", "hold"]),
        st.sampled_from(["ES", "ES1!", "CME_MINI:ES1!", "NQ", "", "??"]),
        st.one_of(st.integers(-5, 5).map(str), st.just(""), st.just("1e400")),
    ),
)
CONTENT_TYPES = st.sampled_from(
    ["application/json", "text/plain; charset=utf-8", "", "application/x-www-form-urlencoded"]
)


@pytest.mark.django_db
@FUZZ
@given(body=BODIES, content_type=CONTENT_TYPES)
def test_any_body_is_answered_200_or_400_and_stored(post, body, content_type):
    before = Signal.objects.count()

    response = post(body, content_type=content_type)

    assert response.status_code in (200, 400), response.content
    answer = json.loads(response.content)
    assert answer["status"] in ("accepted", "duplicate", "rejected")
    if answer["status"] == "duplicate":
        assert Signal.objects.count() == before
    else:
        stored = Signal.objects.get(pk=answer["signal"])
        assert Signal.objects.count() == before + 1
        assert (stored.status == Signal.Status.REJECTED) == (response.status_code == 400)
        if response.status_code == 400:
            assert stored.reason == answer["error"]
