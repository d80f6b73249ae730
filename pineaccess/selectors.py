"""Reads of scripts and access that more than one caller needs."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from pineaccess.models import PineScript, ScriptAccess
from pineaccess.tradingview import is_pine_id

LIVE = ~Q(status=ScriptAccess.Status.REMOVED)


def script_accesses_of_user(*, user) -> QuerySet[ScriptAccess]:
    """The user's live access rows (anything not yet removed), with their scripts."""
    return (
        ScriptAccess.objects.filter(LIVE, user=user).select_related("script").order_by("script__name", "pk")
    )


def pine_scripts_visible_to(*, user) -> QuerySet[PineScript]:
    """Every script for staff; for anyone else only the scripts they have live access to."""
    if user.is_staff:
        return PineScript.objects.all()
    return PineScript.objects.filter(
        pk__in=ScriptAccess.objects.filter(LIVE, user=user).values("script_id")
    ).distinct()


def script_accesses_visible_to(*, user) -> QuerySet[ScriptAccess]:
    """Every access row for staff; for anyone else their own rows."""
    rows = ScriptAccess.objects.select_related("script", "user")
    return rows if user.is_staff else rows.filter(user=user)


def tradingview_username_can_change(*, user) -> bool:
    """Whether the user may change their TradingView username: only once nothing is pending, active,
    failed or being removed (one TradingView user per account until full removal)."""
    return not ScriptAccess.objects.filter(LIVE, user=user).exists()


def default_pine_ids() -> list[str]:
    """The valid script ids in DEFAULT_PINE_IDS, in order, without duplicates."""
    ids = [pine_id.strip() for pine_id in settings.DEFAULT_PINE_IDS if pine_id.strip()]
    return [pine_id for pine_id in dict.fromkeys(ids) if is_pine_id(pine_id)]


def pine_scripts_default() -> QuerySet[PineScript]:
    """The active catalogue scripts named in DEFAULT_PINE_IDS: what a key that names no scripts grants."""
    return PineScript.objects.filter(pine_id__in=default_pine_ids(), active=True)


def script_accesses_due(*, now: datetime | None = None) -> QuerySet[ScriptAccess]:
    """Rows whose time has passed but that are not yet being removed."""
    now = now or timezone.now()
    return ScriptAccess.objects.filter(
        status__in=[ScriptAccess.Status.ACTIVE, ScriptAccess.Status.PENDING, ScriptAccess.Status.FAILED],
        expires_at__lte=now,
    ).select_related("script", "user")


def script_accesses_expiring_within(*, days: int, now: datetime | None = None) -> QuerySet[ScriptAccess]:
    """Active rows that end within the next `days` days."""
    now = now or timezone.now()
    return ScriptAccess.objects.filter(
        status=ScriptAccess.Status.ACTIVE, expires_at__gt=now, expires_at__lte=now + timedelta(days=days)
    )
