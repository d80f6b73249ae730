"""Claims and leases: one holder at a time across processes and machines, on any database.

A claim is taken by one conditional UPDATE and given back by another; no transaction stays open while its
holder works (a broker call, a Tradovate login, a reconciliation can take seconds), and a claim whose holder
died lapses by itself. Rows of a queue (a recorder's signals, a trader's decisions) are run in arrival order.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db.models import F, Q, QuerySet
from django.utils import timezone

from trading.errors import WaitForEarlier
from trading.models import BrokerAccount

# How long a task that must wait for an earlier signal (or decision) waits before it looks again, and how long
# one task works through earlier ones before it makes way (well inside CELERY_TASK_SOFT_TIME_LIMIT).
WAIT_FOR_EARLIER_SECONDS = 1.0
CATCH_UP_SECONDS = 60.0


def claimable_filter(now: datetime, pending: str, working: str) -> Q:
    """Rows waiting to be claimed, or whose holder's lease lapsed."""
    return (
        Q(status=pending)
        | Q(status=working, lease_expires_at__lt=now)
        | Q(status=working, lease_expires_at=None)
    )


def row_claim(
    rows: QuerySet, now: datetime, pending: str, working: str, lease: timedelta
) -> uuid.UUID | None:
    """Claim a row with a lease by one conditional UPDATE; the token proves the claim (None: not claimed)."""
    token = uuid.uuid4()
    claimed = rows.filter(claimable_filter(now, pending, working)).update(
        status=working, claim_token=token, lease_expires_at=now + lease, attempts=F("attempts") + 1
    )
    return token if claimed else None


def run_in_order(
    object_id: int,
    queue: QuerySet,
    run_one,
    now: datetime | None,
    *,
    what: str,
    hand_off: Callable[[int], None] | None = None,
) -> str:
    """Run `object_id` after every earlier unfinished item of its queue; drain later ones while in the lead.

    One task works through a backlog (after an outage, a burst) in order whatever order the messages came in;
    the other tasks find their item done. WaitForEarlier only while a live worker holds an earlier item.
    After a while in the lead it makes way, handing the rest to `hand_off` when items have no message each.
    """
    started = time.monotonic()
    own = "not-claimed"
    while True:
        head = queue.values_list("pk", flat=True).first()
        if head is None:
            return own
        if head > object_id and time.monotonic() - started > CATCH_UP_SECONDS:
            if hand_off is not None:
                hand_off(head)
            return own
        result = run_one(head, now or timezone.now())
        if result == "not-claimed":
            if head < object_id:
                raise WaitForEarlier(f"{what.capitalize()} {object_id} waits for {what} {head} before it.")
            # This item (or a later one) is in another worker's hands; it goes on from there.
            return own
        if head == object_id:
            own = result
        elif head < object_id and time.monotonic() - started > CATCH_UP_SECONDS:
            if hand_off is not None:
                hand_off(object_id)
                return own
            raise WaitForEarlier(f"{what.capitalize()} {object_id} made way after catching up for a while.")


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
