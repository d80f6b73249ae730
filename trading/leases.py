"""Leases on a broker account's row: one holder at a time across processes and machines, on any database.

A lease is a timestamp column taken by one conditional UPDATE and given back by another; no transaction stays
open while its holder works (a Tradovate login or a reconciliation can take seconds), and a lease whose
holder died lapses by itself.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from trading.models import BrokerAccount


def account_lease_take(account_id: int, field: str, seconds: float) -> datetime | None:
    """Take the lease in `field` for `seconds` unless someone holds it; return its end, or None."""
    now = timezone.now()
    held_until = now + timedelta(seconds=seconds)
    free = Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__lt": now})
    taken = BrokerAccount.objects.filter(free, pk=account_id).update(**{field: held_until})
    return held_until if taken else None


def account_lease_release(account_id: int, field: str, held_until: datetime) -> None:
    """Give the lease back, unless it lapsed and another holder took it since."""
    BrokerAccount.objects.filter(pk=account_id, **{field: held_until}).update(**{field: None})
