"""The TradingView session: paste a browser's session cookies, and check that TradingView can be used."""

from __future__ import annotations

from dataclasses import dataclass

from pineaccess.models import AccessLog, PineScript, TradingViewSession
from pineaccess.services.access import script_access_retry_failed
from pineaccess.services.audit import access_log_write, actor_of, sign_in_failure_log
from pineaccess.services.client import OPERATOR_ERROR_CODES, SIGN_IN_ERRORS, error_text, tradingview_client
from pineaccess.session_store import DatabaseSessionStore
from pineaccess.tradingview import TradingViewError

Operation = AccessLog.Operation
Outcome = AccessLog.Outcome


def tradingview_session_paste(*, sessionid: str, sessionid_sign: str | None = None, requested_by=None) -> int:
    """Save session cookies pasted from a browser once TradingView accepts them, then retry the grants that
    failed for want of a session; return how many were queued again. Raises ValueError or TradingViewError."""
    store = DatabaseSessionStore(source=TradingViewSession.Source.PASTED, saved_by=requested_by)
    with tradingview_client(store=store) as client:
        try:
            client.use_session_cookies(sessionid, sessionid_sign or None)
        except TradingViewError as error:
            access_log_write(
                operation=Operation.LOGIN,
                outcome=Outcome.FAILURE,
                detail=error.summary,
                actor=actor_of(requested_by),
                actor_user=requested_by,
            )
            raise
    return script_access_retry_failed(codes=OPERATOR_ERROR_CODES, requested_by=requested_by)


@dataclass(frozen=True)
class ConnectionCheck:
    """Whether we can use TradingView: signed in, the account's scripts, and one script's access list."""

    ok: bool
    account: str
    scripts: tuple[str, ...] = ()
    checked_pine_id: str = ""
    listed_users: int | None = None
    error: str = ""


def tradingview_connection_check(*, pine_id: str | None = None) -> ConnectionCheck:
    """Sign in (or reuse the session), list the account's scripts and the users of one script."""
    with tradingview_client() as client:
        account = client.username or "(pasted session)"
        try:
            scripts = tuple(client.list_scripts())
            target = pine_id or next(
                (s.pine_id for s in PineScript.objects.filter(active=True) if s.pine_id in scripts),
                scripts[0] if scripts else "",
            )
            listed = len(client.list_users(target)) if target else None
        except TradingViewError as error:
            if isinstance(error, SIGN_IN_ERRORS):
                sign_in_failure_log(error)
            return ConnectionCheck(False, account, error=error_text(error))
    return ConnectionCheck(True, account, scripts, target, listed)
