"""The webhook's work between the request and trading: the source check, the recorder lookup and the alert."""

from __future__ import annotations

import time
from datetime import datetime
from functools import lru_cache
from ipaddress import ip_address

from django.conf import settings

from trading.models import Recorder
from trading.selectors import MAX_TOKEN_LENGTH, recorder_for_webhook_token, webhook_token_digest
from trading.services.signals import IncomingAlert
from webhooks.addresses import IPNetwork, address_allowed, client_address, parse_networks
from webhooks.parsing import AlertRejection, ParsedAlert, alert_fingerprint, parse_alert

MAX_BODY_BYTES = 64 * 1024
# The fields the webhook needs of a recorder: everything else stays in the database.
RECORDER_FIELDS = ("id", "owner_id", "symbol", "enabled")


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...], setting: str) -> tuple[IPNetwork, ...]:
    return parse_networks(entries, setting=setting)


def allowed_networks() -> tuple[IPNetwork, ...]:
    """WEBHOOK_ALLOWED_IPS, parsed once per value; ValueError with a sentence for an entry that is bad."""
    return _networks(tuple(settings.WEBHOOK_ALLOWED_IPS), "WEBHOOK_ALLOWED_IPS")


def trusted_proxies() -> tuple[IPNetwork, ...]:
    """TRUSTED_PROXIES, parsed once per value."""
    return _networks(tuple(settings.TRUSTED_PROXIES), "TRUSTED_PROXIES")


def source_address(remote_addr: str, forwarded_for: str | None) -> str:
    """The alert's source: X-Forwarded-For counts only when the connecting peer is a trusted proxy."""
    return client_address(remote_addr, forwarded_for, trusted_proxies())


def source_allowed(address: str) -> bool:
    """Whether WEBHOOK_ALLOWED_IPS lets this address post alerts (an empty list lets everyone)."""
    return address_allowed(address, allowed_networks())


def storable_address(address: str) -> str | None:
    """The address when it is a valid IP (what the database column takes), else None."""
    try:
        return str(ip_address(address))
    except ValueError:
        return None


# A burst of alerts for one strategy looks its recorder up once a second per process, not once per alert.
# What may be stale for that second is checked again where it matters: the worker re-reads the recorder
# (switched off: nothing is traded), and a recorder deleted meanwhile fails the insert (see forget_recorder).
RECORDER_CACHE_SECONDS = 1.0
RECORDER_CACHE_SIZE = 1024
_recorders: dict[str, tuple[float, Recorder]] = {}


def recorder_for_token(token: str) -> Recorder | None:
    """The recorder a webhook token belongs to, with only what the webhook needs; at most one query."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    digest = webhook_token_digest(token)
    now = time.monotonic()
    cached = _recorders.get(digest)
    if cached is not None and cached[0] > now:
        return cached[1]
    recorder = recorder_for_webhook_token(token, fields=RECORDER_FIELDS)
    if recorder is None:
        _recorders.pop(digest, None)
        return None
    if len(_recorders) >= RECORDER_CACHE_SIZE:
        _recorders.clear()
    _recorders[digest] = (now + RECORDER_CACHE_SECONDS, recorder)
    return recorder


def forget_recorder(token: str) -> None:
    """Drop the cached recorder of a token, so the next lookup reads the database."""
    _recorders.pop(webhook_token_digest(token), None)


def recorder_cache_clear() -> None:
    """Drop every cached recorder of this process."""
    _recorders.clear()


def incoming_alert(
    *, body: bytes, content_type: str, source_ip: str | None, received_at: datetime
) -> IncomingAlert:
    """Read an alert body into what trading stores: the raw text, the parsed fields, or why it is unusable."""
    result = parse_alert(body, content_type)
    # NUL cannot be stored in PostgreSQL text; the raw body keeps everything else as sent.
    raw_body = body.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    common = {
        "raw_body": raw_body,
        "content_type": content_type or "",
        "source_ip": source_ip,
        "received_at": received_at,
    }
    if isinstance(result, AlertRejection):
        return IncomingAlert(**common, fields=result.fields, rejection=result.reason)
    assert isinstance(result, ParsedAlert)  # noqa: S101  parse_alert returns one of the two
    return IncomingAlert(
        **common,
        fields=result.fields,
        fingerprint=alert_fingerprint(body),
        action=result.action,
        ticker=result.ticker,
        quantity=result.quantity,
        price=result.price,
        market_position=result.market_position,
        position_size=result.position_size,
        alert_id=result.alert_id,
        fire_time=result.fire_time,
        comment=result.comment,
    )
