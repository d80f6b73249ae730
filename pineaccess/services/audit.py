"""The audit log of Pine Script access: who asked, what was done on TradingView, and how it went."""

from __future__ import annotations

from pineaccess.models import AccessLog, Actor, ScriptAccess
from pineaccess.tradingview import TradingViewError


def actor_of(user) -> str:
    """The audit actor for a request: system when nobody asked, staff for staff, user otherwise."""
    if user is None:
        return Actor.SYSTEM
    return Actor.STAFF if user.is_staff else Actor.USER


def access_log_write(
    *,
    operation: str,
    outcome: str,
    detail: str,
    actor: str = Actor.SYSTEM,
    actor_user=None,
    target_user=None,
    tradingview_username: str = "",
    pine_id: str = "",
) -> AccessLog:
    """Write one audit row (never a secret: TradingView's answers arrive here already summarised)."""
    return AccessLog.objects.create(
        operation=operation,
        outcome=outcome,
        detail=detail[:2000],
        actor=actor,
        actor_user=actor_user,
        target_user=target_user,
        tradingview_username=tradingview_username[:64],
        pine_id=pine_id,
    )


def access_log_write_for_row(row: ScriptAccess, *, operation: str, outcome: str, detail: str) -> None:
    """Write one audit row about an access row, in the name of whoever asked for its change."""
    AccessLog.objects.create(
        operation=operation,
        outcome=outcome,
        detail=detail[:2000],
        actor=row.requested_by_actor,
        actor_user_id=row.requested_by_id,
        target_user_id=row.user_id,
        tradingview_username=row.tradingview_username,
        pine_id=row.script.pine_id,
    )


def sign_in_failure_log(error: TradingViewError) -> None:
    """Record that signing in to TradingView failed, so operators see why grants stopped."""
    access_log_write(
        operation=AccessLog.Operation.LOGIN, outcome=AccessLog.Outcome.FAILURE, detail=error.summary
    )
