"""CME trading sessions: a moment's trading day, when a session starts and ends, across DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from trading.risk.values import aware

CME_TIMEZONE = ZoneInfo("America/Chicago")
SESSION_ROLL = time(17, 0)  # CME's trading day starts at 17:00 Chicago time, the evening before its date


def _roll(day: date) -> datetime:
    # In UTC: Python subtracts and compares two datetimes sharing one ZoneInfo by wall clock, which is
    # wrong across a daylight-saving change.
    return datetime.combine(day, SESSION_ROLL, tzinfo=CME_TIMEZONE).astimezone(UTC)


def session_start(moment: datetime) -> datetime:
    """Return when the CME trading session holding `moment` began: 17:00 America/Chicago, in UTC."""
    local = aware(moment, name="moment").astimezone(CME_TIMEZONE)
    day = local.date() if local.time() >= SESSION_ROLL else local.date() - timedelta(days=1)
    return _roll(day)


def session_key(moment: datetime) -> date:
    """Return the trading day of `moment`: from 17:00 Chicago on, the next calendar day."""
    return session_start(moment).astimezone(CME_TIMEZONE).date() + timedelta(days=1)


def session_range(key: date) -> tuple[datetime, datetime]:
    """Return the start (inclusive) and end (exclusive) of a trading day's session, in UTC."""
    return _roll(key - timedelta(days=1)), _roll(key)
