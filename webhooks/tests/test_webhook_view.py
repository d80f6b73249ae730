"""POST /webhook/<token>: every answer of shared/specs/webhook.md, what is stored, and what never leaks."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import BytesIO
from pathlib import Path

import pytest
import time_machine
from celery import current_app
from django.db import OperationalError
from django.test import Client, RequestFactory

from trading.models import Decision, Recorder, Signal
from trading.services import queue
from trading.services.recorders import recorder_regenerate_webhook_token
from trading.services.signals import IncomingAlert, signal_accept
from trading.tests.factories import RecorderFactory
from webhooks import services, views

ALERTS = Path(__file__).parent / "alerts"
MAX = 64 * 1024
pytestmark = pytest.mark.django_db


def answer(response) -> dict:
    return json.loads(response.content)


def tradingview_content_type(body: bytes) -> str:
    try:
        json.loads(body)
    except ValueError:
        return "text/plain; charset=utf-8"
    return "application/json; charset=utf-8"


# --- 200: stored and queued ---------------------------------------------------------------------------------


def test_a_json_alert_is_stored_with_its_source_and_queued_once_committed(post, recorder, task_queue):
    body = b'{"action": "buy", "ticker": "ES1!", "contracts": 2, "price": 5001.25, "comment": "breakout"}'

    response = post(body, remote_addr="52.89.214.238")

    assert response.status_code == 200
    signal = Signal.objects.get()
    assert answer(response) == {"status": "accepted", "signal": signal.pk}
    assert signal.recorder == recorder
    assert signal.status == Signal.Status.PENDING
    assert signal.raw_body == body.decode()
    assert (signal.action, signal.ticker, signal.quantity, signal.price) == (
        "buy",
        "ES1!",
        2,
        Decimal("5001.25"),
    )
    assert signal.comment == "breakout"
    assert signal.source_ip == "52.89.214.238"
    assert signal.content_type == "application/json"
    assert abs(signal.received_at - datetime.now(UTC)) < timedelta(seconds=5)
    assert signal.fields["contracts"] == 2
    assert task_queue.messages == [("signal_process", signal.pk)]  # once committed, its recorder's runner
    task_queue.run()
    assert [(name, object_id) for name, object_id, _ in task_queue.handled] == [("signal_process", signal.pk)]


FIXTURE_SYMBOLS = {
    "custom_mixed_case_keys.json": "MES",
    "strategy_default_reversal.txt": "MES",
    "custom_numbers_as_text.json": "NQ",
    "plain_sell_mnq.txt": "MNQ",
    "ready_message_entry_short.json": "MNQ",
    "ready_message_reversal.json": "MNQ",
}
UNREADABLE_FIXTURES = {
    "ready_message_from_indicator_alert.txt": "Unfilled TradingView placeholder",
    "strategy_default_from_indicator_alert.txt": "Unfilled TradingView placeholder",
    "custom_zero_contracts.json": "must be a positive number",
    "custom_trailing_comma.txt": "not valid JSON",
}


@pytest.mark.parametrize("name", sorted(path.name for path in ALERTS.iterdir()))
def test_every_captured_tradingview_body_is_stored_and_answered_as_the_contract_says(
    client, task_queue, name
):
    recorder = RecorderFactory(symbol=FIXTURE_SYMBOLS.get(name, "ES"))
    body = (ALERTS / name).read_bytes()

    response = client.post(
        f"/webhook/{recorder.webhook_token}", data=body, content_type=tradingview_content_type(body)
    )

    signal = Signal.objects.get(recorder=recorder)
    assert signal.raw_body == body.decode()
    if name in UNREADABLE_FIXTURES:
        assert response.status_code == 400
        assert answer(response)["status"] == "rejected"
        assert UNREADABLE_FIXTURES[name] in answer(response)["error"]
        assert signal.status == Signal.Status.REJECTED
    else:
        assert response.status_code == 200, answer(response)
        assert answer(response) == {"status": "accepted", "signal": signal.pk}
        assert signal.status == Signal.Status.PENDING


def test_tradingviews_default_strategy_message_is_read_as_plain_text(post):
    response = post(
        "My strategy (20, 2): order sell @ 1 filled on ES1!. New strategy position is 0",
        content_type="text/plain",
    )

    assert response.status_code == 200
    signal = Signal.objects.get()
    assert (signal.action, signal.quantity, signal.market_position) == ("close", 1, "flat")


def test_a_publish_failure_never_fails_the_answer_because_the_row_is_durable(
    client, recorder, monkeypatch, django_capture_on_commit_callbacks, caplog
):
    def broken(*args, **kwargs):
        raise ConnectionError("Redis is restarting")

    monkeypatch.setattr(current_app, "send_task", broken)
    monkeypatch.setattr(queue, "runner_claim", lambda recorder_id: True)
    with django_capture_on_commit_callbacks(execute=True), caplog.at_level(logging.WARNING):
        response = client.post(f"/webhook/{recorder.webhook_token}", data=b"buy", content_type="text/plain")

    assert response.status_code == 200
    assert Signal.objects.get().status == Signal.Status.PENDING
    assert "the sweeper will re-queue it" in caplog.text


def test_a_switched_off_recorder_stores_the_alert_as_ignored_and_queues_nothing(post, recorder, task_queue):
    recorder.enabled = False
    recorder.save()

    response = post(b'{"action": "buy"}')

    assert response.status_code == 200
    signal = Signal.objects.get()
    assert answer(response)["status"] == "ignored"
    assert answer(response)["signal"] == signal.pk
    assert signal.status == Signal.Status.IGNORED
    assert "switched off" in signal.reason
    assert task_queue.messages == []


def test_the_webhook_needs_no_csrf_token_and_sets_no_cookie(recorder, task_queue):
    client = Client(enforce_csrf_checks=True)

    response = client.post(f"/webhook/{recorder.webhook_token}", data=b"buy", content_type="text/plain")

    assert response.status_code == 200
    assert not response.cookies


# The test's own transaction turns the insert's transaction into a savepoint pair: two statements on top.
SAVEPOINT_PAIR = 2


def test_the_hot_path_costs_a_bounded_number_of_queries(post, django_assert_max_num_queries):
    post(b'{"action": "buy", "price": 1}')  # warms the cached contract table and recorder
    # Look for an identical body just before, insert.
    with django_assert_max_num_queries(2 + SAVEPOINT_PAIR):
        response = post(b'{"action": "sell", "price": 2}')
    assert response.status_code == 200
    # With an alert id the unique constraint alone decides: insert.
    with django_assert_max_num_queries(1 + SAVEPOINT_PAIR):
        response = post(b'{"action": "sell", "price": 3, "id": "unique-1"}')
    assert response.status_code == 200


@pytest.mark.django_db(transaction=True)
def test_outside_any_transaction_an_alert_is_one_insert_and_a_copy_is_still_a_duplicate(
    client, task_queue, django_assert_num_queries
):
    recorder = RecorderFactory(symbol="ES")
    url = f"/webhook/{recorder.webhook_token}"
    client.post(url, data=b'{"action": "buy", "id": "warm-up"}', content_type="application/json")

    with django_assert_num_queries(1):  # no BEGIN, no COMMIT: the INSERT commits itself
        first = client.post(url, data=b'{"action": "buy", "id": "A-1"}', content_type="application/json")
    again = client.post(url, data=b'{"action": "sell", "id": "A-1"}', content_type="application/json")

    assert answer(first)["status"] == "accepted"
    assert answer(again) == {"status": "duplicate", "signal": answer(first)["signal"]}
    assert Signal.objects.filter(alert_id="A-1").count() == 1
    # The warm-up and the first: the duplicate queues nothing.
    assert task_queue.names() == ["signal_process"] * 2


# --- the recorder lookup, cached for a second ---------------------------------------------------------------


def test_a_recorder_switched_off_within_the_cached_second_still_trades_nothing(post, recorder, task_queue):
    post(b'{"action": "buy", "id": "before"}')
    Recorder.objects.filter(pk=recorder.pk).update(enabled=False)

    response = post(b'{"action": "buy", "id": "after"}')

    assert answer(response)["status"] == "accepted"  # the cached recorder was still on
    task_queue.run()
    signal = Signal.objects.get(alert_id="after")
    assert signal.status == Signal.Status.IGNORED
    assert "switched off before the signal was processed" in signal.reason
    assert not Decision.objects.filter(signal=signal).exists()


@pytest.mark.django_db(transaction=True)  # the foreign key is checked when the INSERT commits
def test_a_recorder_deleted_while_cached_is_an_unknown_webhook_and_nothing_is_stored(client, task_queue):
    recorder = RecorderFactory(symbol="ES")
    assert services.recorder_for_token(recorder.webhook_token) is not None  # cached
    Recorder.objects.filter(pk=recorder.pk).delete()

    response = client.post(
        f"/webhook/{recorder.webhook_token}", data=b'{"action": "buy"}', content_type="application/json"
    )

    assert response.status_code == 404
    assert answer(response) == {"error": "unknown webhook"}
    assert not Signal.objects.exists()


def test_a_replaced_token_stops_working_once_the_cached_moment_is_over(post, recorder, monkeypatch):
    monkeypatch.setattr(services, "RECORDER_CACHE_SECONDS", 0.05)
    old_token = recorder.webhook_token
    assert post(b'{"action": "buy", "id": "1"}').status_code == 200
    new_token = recorder_regenerate_webhook_token(recorder=recorder)
    time.sleep(0.06)

    assert post(b'{"action": "buy", "id": "2"}', token=old_token).status_code == 404
    assert post(b'{"action": "buy", "id": "3"}', token=new_token).status_code == 200


# --- 200: duplicates ----------------------------------------------------------------------------------------


def test_the_same_alert_id_is_a_duplicate_of_the_first_signal_even_with_another_body(post, task_queue):
    first = post(b'{"action": "buy", "id": "ES-42", "price": 5000}')
    again = post(b'{"action": "buy", "id": "ES-42", "price": 5000.25}')

    assert first.status_code == again.status_code == 200
    assert answer(again) == {"status": "duplicate", "signal": answer(first)["signal"]}
    assert Signal.objects.count() == 1
    assert task_queue.names() == ["signal_process"]  # for the first only


def test_an_alert_id_is_per_recorder(post, client):
    other = RecorderFactory(symbol="ES")
    post(b'{"action": "buy", "id": "same-id"}')

    response = client.post(
        f"/webhook/{other.webhook_token}",
        data=b'{"action": "buy", "id": "same-id"}',
        content_type="application/json",
    )

    assert answer(response)["status"] == "accepted"
    assert Signal.objects.count() == 2


def test_an_identical_body_within_the_window_is_a_duplicate(post):
    with time_machine.travel(datetime(2026, 3, 2, 15, 0, 0, 100_000, tzinfo=UTC), tick=False) as clock:
        first = post(b"buy ES 1")
        clock.shift(timedelta(seconds=1.5))
        again = post(b"buy ES 1  \n")  # trailing whitespace is the same alert

    assert answer(again) == {"status": "duplicate", "signal": answer(first)["signal"]}
    assert Signal.objects.count() == 1


def test_an_identical_body_across_a_bucket_boundary_is_still_a_duplicate(post):
    # 15:00:01.900 and 15:00:02.100 fall in different 2-second buckets but only 0.2 s apart.
    with time_machine.travel(datetime(2026, 3, 2, 15, 0, 1, 900_000, tzinfo=UTC), tick=False) as clock:
        first = post(b"sell")
        clock.shift(timedelta(milliseconds=200))
        again = post(b"sell")

    assert answer(again)["status"] == "duplicate"
    assert answer(again)["signal"] == answer(first)["signal"]


def test_an_identical_body_after_the_window_is_a_new_signal(post, settings):
    settings.WEBHOOK_DEDUP_SECONDS = 2
    with time_machine.travel(datetime(2026, 3, 2, 15, 0, 0, tzinfo=UTC), tick=False) as clock:
        post(b"buy")
        clock.shift(timedelta(seconds=2.5))
        later = post(b"buy")

    assert answer(later)["status"] == "accepted"
    assert Signal.objects.count() == 2


def test_two_copies_racing_past_the_duplicate_check_still_make_one_signal(recorder, monkeypatch):
    """The unique constraint on (recorder, body digest, time bucket) decides when the read saw nothing."""
    monkeypatch.setattr("trading.services.signals.body_duplicate_find", lambda *args: None)
    moment = datetime(2026, 3, 2, 15, 0, 0, 500_000, tzinfo=UTC)
    alert = IncomingAlert(
        raw_body="buy",
        content_type="text/plain",
        source_ip=None,
        received_at=moment,
        fingerprint="f" * 64,
        action="buy",
    )

    first = signal_accept(recorder=recorder, alert=alert)
    monkeypatch.undo()
    second = signal_accept(recorder=recorder, alert=alert)

    assert (first.outcome, second.outcome) == ("accepted", "duplicate")
    assert second.signal_id == first.signal_id
    assert Signal.objects.count() == 1


def test_a_duplicate_of_a_rejected_body_is_stored_again_because_nothing_was_executed(post):
    post(b"hello")
    response = post(b"hello")

    assert response.status_code == 400
    assert Signal.objects.filter(status=Signal.Status.REJECTED).count() == 2


# --- 400: stored as rejected, with the reason ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"hello there", "Could not read the alert"),
        (b'{"ticker": "ES1!"}', 'Missing "action"'),
        (b'{"action": "buy", "contracts": -1}', '"contracts" must be a positive number'),
        (b"\xff\xfe\x00junk", "not valid UTF-8"),
        (b"", "Empty body"),
        (b'{"action": "buy", "ticker": "NQ1!"}', "The alert is for NQ (NQ1!) but this recorder trades ES"),
        (b'{"action": "buy", "ticker": "ZZTOP"}', "not a supported contract"),
    ],
)
def test_a_body_that_cannot_be_used_is_stored_as_rejected_and_answered_400_with_the_reason(
    post, task_queue, body, reason
):
    response = post(body)

    assert response.status_code == 400
    signal = Signal.objects.get()
    assert answer(response) == {"status": "rejected", "signal": signal.pk, "error": signal.reason}
    assert reason in signal.reason
    assert signal.status == Signal.Status.REJECTED
    assert signal.raw_body == body.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    assert task_queue.messages == []


def test_a_nul_byte_in_the_body_is_stored_replaced_so_every_database_accepts_it(post):
    response = post(b"buy\x00")

    assert response.status_code in (200, 400)
    assert "\x00" not in Signal.objects.get().raw_body


# --- 403: source address ------------------------------------------------------------------------------------


def test_an_address_outside_the_allow_list_is_refused_and_nothing_is_stored(post, settings):
    settings.WEBHOOK_ALLOWED_IPS = ["tradingview"]

    refused = post(b"buy", remote_addr="198.51.100.7")
    allowed = post(b"buy", remote_addr="34.212.75.30")

    assert refused.status_code == 403
    assert "198.51.100.7" in answer(refused)["error"]
    assert allowed.status_code == 200
    assert Signal.objects.count() == 1


def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(post, settings):
    settings.WEBHOOK_ALLOWED_IPS = ["tradingview"]

    response = post(b"buy", remote_addr="203.0.113.9", HTTP_X_FORWARDED_FOR="52.89.214.238")

    assert response.status_code == 403
    assert Signal.objects.count() == 0


def test_x_forwarded_for_from_a_trusted_proxy_names_the_source(post, settings):
    settings.WEBHOOK_ALLOWED_IPS = ["tradingview"]
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]

    response = post(b"buy", remote_addr="10.1.2.3", HTTP_X_FORWARDED_FOR="203.0.113.50, 52.89.214.238")
    spoofed = post(b"sell", remote_addr="10.1.2.3", HTTP_X_FORWARDED_FOR="52.89.214.238, 203.0.113.50")

    assert response.status_code == 200
    assert Signal.objects.get().source_ip == "52.89.214.238"
    assert spoofed.status_code == 403


def test_an_unreadable_allow_list_answers_503_and_the_start_up_check_names_it(post, settings):
    from webhooks.checks import address_settings_check

    settings.WEBHOOK_ALLOWED_IPS = ["not-an-address"]

    response = post(b"buy")

    assert response.status_code == 503
    assert Signal.objects.count() == 0
    assert [error.id for error in address_settings_check(None)] == ["webhooks.E001"]


# --- 404, 405, 413 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["no-such-token", "x" * 500, "a/b", "%00"])
def test_an_unknown_token_is_404_and_nothing_is_stored(post, token):
    response = post(b'{"action": "buy"}', token=token)

    assert response.status_code == 404
    assert answer(response) == {"error": "unknown webhook"}
    assert Signal.objects.count() == 0


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_anything_but_post_is_405_and_nothing_is_stored(client, recorder, method):
    response = getattr(client, method)(f"/webhook/{recorder.webhook_token}")

    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert Signal.objects.count() == 0


def test_a_body_over_64_kib_is_413_and_nothing_is_stored(post):
    response = post(b'{"action": "buy", "comment": "' + b"x" * MAX + b'"}')

    assert response.status_code == 413
    assert "64 KiB" in answer(response)["error"]
    assert Signal.objects.count() == 0


def test_a_body_of_exactly_64_kib_is_accepted(post):
    prefix = b'{"action": "buy", "comment": "'
    body = prefix + b"x" * (MAX - len(prefix) - 2) + b'"}'
    assert len(body) == MAX

    assert post(body).status_code == 200


def test_a_body_longer_than_its_content_length_claimed_is_cut_off_at_64_kib_while_reading(recorder):
    class EndlessStream(BytesIO):
        def read(self, size=-1):
            return b"x" * (size if size and size > 0 else 1024)

    request = RequestFactory().post(f"/webhook/{recorder.webhook_token}", data=b"", content_type="text/plain")
    request._stream = EndlessStream()

    response = views.webhook(request, recorder.webhook_token)

    assert response.status_code == 413
    assert Signal.objects.count() == 0


# --- 503: database unavailable ------------------------------------------------------------------------------


def test_a_database_outage_while_finding_the_recorder_is_503(post, monkeypatch):
    def down(token):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr("webhooks.services.recorder_for_token", down)

    response = post(b"buy")

    assert response.status_code == 503
    assert "TradingView will retry" in answer(response)["error"]


def test_a_database_outage_while_storing_is_503(post, monkeypatch):
    def down(**kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(views, "signal_accept", down)

    response = post(b"buy")

    assert response.status_code == 503


# --- secrets ------------------------------------------------------------------------------------------------


def test_the_token_never_appears_in_a_log_line_whatever_the_answer(post, recorder, settings, caplog):
    settings.WEBHOOK_ALLOWED_IPS = ["52.89.214.238"]
    token = recorder.webhook_token
    with caplog.at_level(logging.DEBUG):
        post(b"buy")
        post(b"nonsense")
        post(b"buy", token=token + "x")
        post(b"buy", remote_addr="198.51.100.1")
        post(b"x" * (MAX + 1))

    assert caplog.records
    for record in caplog.records:
        assert token not in record.getMessage()
        assert token[:20] not in record.getMessage()
    assert f"recorder {recorder.pk}" in caplog.text
