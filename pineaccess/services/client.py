"""TradingView as the services use it: a client built from the settings, and how its errors are classed."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings

from pineaccess.session_store import DatabaseSessionStore
from pineaccess.tradingview import (
    CaptchaRequired,
    InvalidCredentials,
    RateLimited,
    SessionExpired,
    TradingViewClient,
    TradingViewError,
    TradingViewSessionStore,
    TradingViewUnavailable,
    TwoFactorRequired,
    client_from_settings,
)

# Errors worth retrying later with backoff; every other TradingViewError is final for this attempt.
TRANSIENT_ERRORS: tuple[type[TradingViewError], ...] = (TradingViewUnavailable, RateLimited)
SIGN_IN_ERRORS: tuple[type[TradingViewError], ...] = (
    CaptchaRequired,
    TwoFactorRequired,
    InvalidCredentials,
    SessionExpired,
)
# Failures an operator fixes (a fresh session, TradingView back up); their grants are retried after the fix.
OPERATOR_ERROR_CODES = frozenset(
    {
        "captcha_required",
        "two_factor_required",
        "invalid_credentials",
        "session_expired",
        "trading_view_unavailable",
        "rate_limited",
        "unexpected_answer",
    }
)
# Grants that failed only because TradingView was down or busy: retried automatically later.
OUTAGE_ERROR_CODES = frozenset({"trading_view_unavailable", "rate_limited"})


def tradingview_client(*, store: TradingViewSessionStore | None = None, **options: Any) -> TradingViewClient:
    """Build a TradingView client from the settings with the session kept in the database."""
    for option, setting in (
        ("timeout", "TRADINGVIEW_TIMEOUT"),
        ("max_attempts", "TRADINGVIEW_MAX_ATTEMPTS"),
        ("backoff_seconds", "TRADINGVIEW_BACKOFF_SECONDS"),
    ):
        if hasattr(settings, setting):
            options.setdefault(option, getattr(settings, setting))
    return client_from_settings(store if store is not None else DatabaseSessionStore(), **options)


def error_code(error: BaseException) -> str:
    """A short stable name for an error class: UserNotFound -> user_not_found."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(error).__name__).lower()


def error_text(error: TradingViewError) -> str:
    """The error's message with its notes, as kept on a row for people to read."""
    notes = " ".join(getattr(error, "__notes__", []))
    return f"{error.message} {notes}".strip()
