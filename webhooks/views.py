"""POST /webhook/<token>: TradingView's alerts, stored and answered at once (shared/specs/webhook.md).

The hot path: no session, no user, no CSRF; one indexed query finds the recorder (cached for a second), one
INSERT stores the signal, and the work is queued once it is committed. The token is a secret: it never reaches
a log line (Django's request log prints the path, so every answer here is marked as already logged), only the
recorder id does.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError, IntegrityError
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from trading.services.signals import signal_accept
from webhooks import services

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = services.MAX_BODY_BYTES
TOO_LARGE = f"The alert body is larger than {MAX_BODY_BYTES // 1024} KiB: shorten the alert message."


def _answer(payload: dict, status: int = 200) -> JsonResponse:
    response = JsonResponse(payload, status=status)
    # Keeps django.request from logging "Not Found: /webhook/<token>" and so the token.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def _declared_length(request: HttpRequest) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None


def _read_body(request: HttpRequest) -> bytes | None:
    """Read at most MAX_BODY_BYTES; None when the body is larger, whatever Content-Length claimed."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = request.read(MAX_BODY_BYTES + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
    return b"".join(chunks)


@csrf_exempt
def webhook(request: HttpRequest, token: str) -> JsonResponse:
    """Store a TradingView alert for the recorder the token names and answer at once."""
    try:
        return _webhook(request, token)
    except Exception:
        # Django's own error log would print the path, and with it the token.
        logger.exception("Webhook failed unexpectedly; the alert was not stored")
        return _answer(
            {"error": "Internal error: the alert was not stored. TradingView will send it again."}, 500
        )


def _webhook(request: HttpRequest, token: str) -> JsonResponse:
    if request.method != "POST":
        response = _answer({"error": "Send alerts with POST, as TradingView does."}, 405)
        response["Allow"] = "POST"
        return response
    received_at = timezone.now()
    declared = _declared_length(request)
    if declared is not None and declared > MAX_BODY_BYTES:
        return _answer({"error": TOO_LARGE}, 413)
    try:
        address = services.source_address(
            request.META.get("REMOTE_ADDR", ""), request.META.get("HTTP_X_FORWARDED_FOR")
        )
        allowed = services.source_allowed(address)
    except ValueError as error:
        logger.error("Webhook address settings are invalid: %s", error)
        return _answer(
            {"error": "The server's webhook address settings are invalid; its operator must fix them."}, 503
        )
    if not allowed:
        logger.info("Webhook refused a request from %s (not in WEBHOOK_ALLOWED_IPS)", address)
        return _answer(
            {"error": f"Alerts from {address} are not accepted: the address is not in the allow-list."}, 403
        )
    try:
        body = _read_body(request)
    except OSError:
        return _answer({"error": "The alert body could not be read: the connection ended early."}, 400)
    if body is None:
        return _answer({"error": TOO_LARGE}, 413)
    try:
        recorder = services.recorder_for_token(token)
    except DatabaseError:
        logger.warning("Webhook could not reach the database to find the recorder", exc_info=True)
        return _answer(
            {"error": "The database is unavailable: the alert was not stored. TradingView will retry."}, 503
        )
    if recorder is None:
        return _answer({"error": "unknown webhook"}, 404)

    alert = services.incoming_alert(
        body=body,
        content_type=request.META.get("CONTENT_TYPE", ""),
        source_ip=services.storable_address(address),
        received_at=received_at,
    )
    try:
        result = signal_accept(recorder=recorder, alert=alert)
    except IntegrityError:
        # Not a duplicate, so the recorder was deleted after this process cached it.
        services.forget_recorder(token)
        if services.recorder_for_token(token) is None:
            return _answer({"error": "unknown webhook"}, 404)
        raise
    except DatabaseError:
        logger.warning("Webhook for recorder %s could not store the alert", recorder.pk, exc_info=True)
        return _answer(
            {"error": "The database is unavailable: the alert was not stored. TradingView will retry."}, 503
        )

    if result.outcome == "rejected":
        logger.info(
            "Webhook for recorder %s: signal %s rejected: %s", recorder.pk, result.signal_id, result.reason
        )
        return _answer({"status": "rejected", "signal": result.signal_id, "error": result.reason}, 400)
    logger.debug("Webhook for recorder %s: signal %s %s", recorder.pk, result.signal_id, result.outcome)
    if result.outcome == "ignored":
        return _answer({"status": "ignored", "signal": result.signal_id, "reason": result.reason})
    return _answer({"status": result.outcome, "signal": result.signal_id})
