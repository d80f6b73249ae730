"""Tradovate REST adapter: the only code that builds Tradovate URLs or reads Tradovate's JSON."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from http.cookiejar import DefaultCookiePolicy
from typing import Any, Literal, Protocol
from urllib.parse import urlencode

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError, ProxyError, SSLError

from trading.brokers.base import (
    AccountBalance,
    BracketLeg,
    BracketRequest,
    Broker,
    BrokerError,
    BrokerFill,
    BrokerNeedsAttention,
    BrokerOrder,
    BrokerPosition,
    BrokerUnavailable,
    OrderAction,
    OrderOutcomeUnknown,
    OrderRejected,
    OrderRequest,
    OrderStatus,
    OrderType,
    PlacedBracket,
    PlacedOco,
    PlacedOrder,
    SubAccount,
    TimeInForce,
    check_oco_pair,
)

logger = logging.getLogger(__name__)

Timeout = tuple[float, float]
Environment = Literal["live", "demo"]

DEFAULT_TIMEOUT: Timeout = (3.05, 10.0)
RENEW_BEFORE_EXPIRY = timedelta(minutes=10)
# A token this close to expiry may die in flight; it is not worth sending.
EXPIRY_SAFETY = timedelta(seconds=30)
# Tradovate allows about 5 failed logins an hour per address; stop well before the lock-out.
MAX_FAILED_LOGINS_PER_HOUR = 3
CAPTCHA_BACKOFF = timedelta(hours=1)
MAX_PENALTY_ROUNDS = 3
MAX_PENALTY_WAIT_SECONDS = 120.0
LOCKED_OUT_SECONDS = 3600.0
LOCKED_OUT_REASON = "locked_out"
SLOW_DOWN_SECONDS = 60.0
OAUTH_DEFAULT_LIFETIME = timedelta(minutes=60)
# The front month changes at roll-over, so a continuous symbol is looked up again now and then.
FRONT_MONTH_CACHE_SECONDS = 3600.0
ORDER_VERSION_CACHE_SIZE = 20_000


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


# --- HTTP session ------------------------------------------------------------------------------------------


_session_lock = threading.Lock()
_session: requests.Session | None = None
_session_pid: int | None = None


def new_session() -> requests.Session:
    """A pooled session that never retries on its own and keeps no cookies (tokens travel in headers)."""
    session = requests.Session()
    # Retries are decided here, never by urllib3: an automatic resend of an order could double it.
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    # One session serves every login; a cookie set for one must never ride along with another's requests.
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    session.headers.update({"Accept": "application/json", "User-Agent": "JustTrades"})
    return session


def shared_session() -> requests.Session:
    """The process's pooled session, created again after a fork so workers never share sockets."""
    global _session, _session_pid
    with _session_lock:
        if _session is None or _session_pid != os.getpid():
            _session = new_session()
            _session_pid = os.getpid()
        return _session


def shared_session_forget() -> None:
    """Drop this process's session without closing it, so the next call makes a new one (tests start so)."""
    global _session, _session_pid
    with _session_lock:
        _session, _session_pid = None, None


def locked_out() -> BrokerNeedsAttention:
    """Tradovate's one-hour lock-out (HTTP 429), which every further request extends: the login must rest."""
    return BrokerNeedsAttention(
        "Tradovate has locked this login out for an hour for too many requests; nothing was done. "
        "JustTrades sends nothing on this login until the hour is over, then tries again by itself.",
        reason=LOCKED_OUT_REASON,
        retry_after=LOCKED_OUT_SECONDS,
    )


# --- tokens and credentials --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TradovateToken:
    """An access token and when it expires; `source` says whether it came from OAuth or a password login."""

    access_token: str = field(repr=False)
    expires_at: datetime
    source: Literal["password", "oauth"] = "password"
    user_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form for stores (encrypt it at rest: it holds the token)."""
        return {
            "access_token": self.access_token,
            "expires_at": self.expires_at.isoformat(),
            "source": self.source,
            "user_id": self.user_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TradovateToken:
        """The inverse of as_dict."""
        return cls(
            access_token=data["access_token"],
            expires_at=_parse_time(data["expires_at"]),
            source=data.get("source", "password"),
            user_id=data.get("user_id"),
        )


@dataclass(frozen=True)
class TradovateCredentials:
    """A username/password login with the application's registration (appId, cid, sec) and our device id."""

    name: str
    password: str = field(repr=False)
    app_id: str
    app_version: str
    cid: int | str
    sec: str = field(repr=False)
    device_id: str


class TradovateTokenStore(Protocol):
    """Where one login's current token lives, shared by every worker and process that uses the login."""

    def get(self) -> TradovateToken | None:
        """The freshest token known (a cached one, else the OAuth token saved at connect), or None."""

    def put(self, token: TradovateToken) -> None:
        """Keep a new token for everyone."""

    def renewal_lock(self) -> AbstractContextManager[object]:
        """Held while renewing or logging in, so that many workers renew once (a row lock or a Redis lock)."""


class MemoryTokenStore:
    """A token store for one process (tests, scripts); the database-backed store shares across processes."""

    def __init__(self, token: TradovateToken | None = None) -> None:
        self._token = token
        self._lock = threading.Lock()
        self._renewal = threading.Lock()

    def get(self) -> TradovateToken | None:
        """The token kept, if any."""
        with self._lock:
            return self._token

    def put(self, token: TradovateToken) -> None:
        """Replace the token kept."""
        with self._lock:
            self._token = token

    @contextmanager
    def renewal_lock(self) -> Iterator[None]:
        """A process-wide lock for this store."""
        with self._renewal:
            yield


@dataclass(frozen=True)
class TradovateUser:
    """Who a token belongs to (GET /auth/me)."""

    user_id: int
    full_name: str
    email: str


# --- JSON helpers ------------------------------------------------------------------------------------------


_NOT_JSON = object()


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, default=_json_default, separators=(",", ":")).encode()


def _parse_time(value: object) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    else:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _optional_time(value: object) -> datetime | None:
    try:
        return _parse_time(value) if value else None
    except ValueError:
        return None


def _decimal(value: object) -> Decimal | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _id(value: object) -> str | None:
    return None if value is None or value == "" or value == 0 else str(value)


def _numeric_id(value: str, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"A Tradovate {what} is a number, not {value!r}.") from None


def _error_in(data: object) -> tuple[str | None, str] | None:
    """(reason, verbatim text) when a 200 answer is a refusal, else None."""
    if not isinstance(data, dict):
        return None
    reason = data.get("failureReason") or None
    text = data.get("failureText") or data.get("errorText") or None
    violations = data.get("violations")
    if not text and violations:
        items = violations if isinstance(violations, list) else [violations]
        text = "; ".join(item if isinstance(item, str) else json.dumps(item, default=str) for item in items)
    if reason is None and text is None:
        return None
    return (str(reason) if reason else None), str(text or reason)


def _text_of(data: object) -> str:
    error = _error_in(data)
    if error:
        return error[1]
    if isinstance(data, dict):
        for key in ("error_description", "error", "message"):
            if data.get(key):
                return str(data[key])
    if isinstance(data, str) and data.strip():
        return data.strip()[:500]
    return ""


# --- transport ---------------------------------------------------------------------------------------------


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request failed before any byte of it could reach the server."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema)):
        return True
    if isinstance(exc, requests.ConnectionError):
        reason = exc.args[0] if exc.args else None
        if isinstance(reason, MaxRetryError):
            reason = reason.reason
        return isinstance(reason, (ConnectTimeoutError, NewConnectionError, SSLError, ProxyError))
    return False


class _Transport:
    """One base URL: sends a request, honours penalty answers, classifies transport failures."""

    def __init__(
        self, base_url: str, session: requests.Session, timeout: Timeout, sleep: Callable[[float], None]
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.timeout = timeout
        self.sleep = sleep

    def send(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        token: str | None = None,
        changes_orders: bool = False,
    ) -> tuple[int, Any]:
        """The status and parsed body of one exchange; a penalty answer is waited out and the body resent."""
        for penalty_round in range(MAX_PENALTY_ROUNDS + 1):
            status, data = self._exchange(method, path, body, params, token, changes_orders)
            if not (status == 200 and isinstance(data, dict) and "p-ticket" in data):
                return status, data
            if data.get("p-captcha"):
                logger.warning("Tradovate asked for a captcha on %s %s", method, path)
                raise BrokerNeedsAttention(
                    "Tradovate asks for a captcha before it accepts this login, which a server cannot solve. "
                    "Connect the account through OAuth (Connect Tradovate) instead, or try again in an hour.",
                    reason="captcha",
                    retry_after=CAPTCHA_BACKOFF.total_seconds(),
                )
            wait = float(data.get("p-time") or 0)
            if wait > MAX_PENALTY_WAIT_SECONDS or penalty_round == MAX_PENALTY_ROUNDS:
                # A penalty answer means the request was not acted on, so giving up here is safe.
                raise BrokerUnavailable(
                    f"Tradovate asked us to wait {wait:g} seconds before sending this again; "
                    "nothing was done. Try again later.",
                    retry_after=wait,
                )
            logger.info("Tradovate asked to wait %g s before %s %s; waiting", wait, method, path)
            self.sleep(wait)
            if body is not None:
                # Tradovate wants the identical request again with the ticket it handed out.
                body = {**body, "p-ticket": data["p-ticket"]}
        raise AssertionError("unreachable")  # pragma: no cover

    def _exchange(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        params: dict[str, Any] | None,
        token: str | None,
        changes_orders: bool,
    ) -> tuple[int, Any]:
        headers = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = _dumps(body)
        started = time.monotonic()
        try:
            response = self.session.request(
                method,
                self.base_url + path,
                params=params,
                data=data,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            elapsed_ms = (time.monotonic() - started) * 1000
            if _never_sent(exc):
                logger.warning("Tradovate %s %s not sent: %s", method, path, type(exc).__name__)
                raise BrokerUnavailable(
                    "Could not connect to Tradovate, so nothing was sent. It is safe to try again."
                ) from exc
            if changes_orders:
                logger.error(
                    "Tradovate %s %s outcome unknown after %.0f ms: %s",
                    method,
                    path,
                    elapsed_ms,
                    type(exc).__name__,
                )
                what = "timed out" if isinstance(exc, requests.Timeout) else "connection lost"
                raise OrderOutcomeUnknown(
                    f"Tradovate did not answer after the request was sent ({what}), so the order may or may "
                    "not have been changed. Do not send it again: check the account's orders first."
                ) from exc
            logger.warning(
                "Tradovate %s %s failed after %.0f ms: %s", method, path, elapsed_ms, type(exc).__name__
            )
            raise BrokerUnavailable(
                "Tradovate did not answer in time or dropped the connection; nothing was changed. "
                "It is safe to try again."
            ) from exc
        logger.debug(
            "Tradovate %s %s -> %s in %.0f ms",
            method,
            path,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        try:
            parsed = response.json(parse_float=Decimal)
        except ValueError:
            parsed = response.text if response.status_code >= 300 else _NOT_JSON
        return response.status_code, parsed


# --- failed-login guard ------------------------------------------------------------------------------------


class _LoginGuard:
    """Counts failed logins per login in this process and stops trying before Tradovate locks us out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[tuple[str, str], list[datetime]] = {}
        self._blocked_until: dict[tuple[str, str], datetime] = {}

    def check(self, key: tuple[str, str], now: datetime) -> None:
        """Raise BrokerNeedsAttention when another login attempt would risk a lock-out."""
        with self._lock:
            blocked_until = self._blocked_until.get(key)
            if blocked_until and blocked_until > now:
                raise BrokerNeedsAttention(
                    "Tradovate asked for a captcha on this login less than an hour ago, so we are not "
                    "trying again yet. Connect the account through OAuth (Connect Tradovate) instead.",
                    reason="captcha",
                    retry_after=(blocked_until - now).total_seconds(),
                )
            recent = [at for at in self._failures.get(key, []) if now - at < timedelta(hours=1)]
            self._failures[key] = recent
            if len(recent) >= MAX_FAILED_LOGINS_PER_HOUR:
                raise BrokerNeedsAttention(
                    f"Tradovate refused the last {len(recent)} logins for this account, so we stopped "
                    "trying for an hour to avoid a lock-out. Check the username and password, or connect "
                    "through OAuth.",
                    reason="credentials",
                    retry_after=(recent[0] + timedelta(hours=1) - now).total_seconds(),
                )

    def failed(self, key: tuple[str, str], now: datetime) -> None:
        """Remember a refused login."""
        with self._lock:
            self._failures.setdefault(key, []).append(now)

    def captcha(self, key: tuple[str, str], now: datetime) -> None:
        """Block logins for an hour after a captcha demand."""
        with self._lock:
            self._blocked_until[key] = now + CAPTCHA_BACKOFF

    def succeeded(self, key: tuple[str, str]) -> None:
        """Forget the failures of a login that works again."""
        with self._lock:
            self._failures.pop(key, None)
            self._blocked_until.pop(key, None)


_login_guard = _LoginGuard()


# --- client ------------------------------------------------------------------------------------------------


class TradovateClient:
    """Authenticated JSON calls to one Tradovate environment for one login; safe to share between threads."""

    def __init__(
        self,
        base_url: str,
        *,
        credentials: TradovateCredentials | None,
        token_store: TradovateTokenStore,
        timeout: Timeout = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._transport = _Transport(base_url, session or shared_session(), timeout, sleep)
        self._credentials = credentials
        self._store = token_store
        self._clock = clock

    @property
    def base_url(self) -> str:
        """The REST base this client talks to (ends in /v1)."""
        return self._transport.base_url

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """An authenticated read; retried once after a fresh token if Tradovate answers 401."""
        return self._call("GET", path, params=params, changes_orders=False)

    def post(self, path: str, body: dict[str, Any], *, changes_orders: bool) -> Any:
        """An authenticated POST; one that changes orders is never resent after it may have arrived."""
        return self._call("POST", path, body=body, changes_orders=changes_orders)

    def me(self) -> TradovateUser:
        """The user the token belongs to."""
        data = self.get("/auth/me")
        if not isinstance(data, dict) or "userId" not in data:
            raise BrokerError("Tradovate did not say who this login belongs to.")
        return TradovateUser(
            user_id=int(data["userId"]),
            full_name=str(data.get("fullName") or ""),
            email=str(data.get("email") or ""),
        )

    def access_token(self) -> str:
        """A usable access token: the cached one, else a renewed one, else a new login."""
        token = self._store.get()
        if token is not None and token.expires_at - self._clock() > RENEW_BEFORE_EXPIRY:
            return token.access_token
        # Whoever holds the lock renews (or logs in) for every worker; the others find its token on re-check.
        with self._store.renewal_lock():
            token = self._store.get()
            now = self._clock()
            if token is not None and token.expires_at - now > RENEW_BEFORE_EXPIRY:
                return token.access_token
            if token is not None and token.expires_at - now > EXPIRY_SAFETY:
                try:
                    renewed = self._renew(token)
                except BrokerUnavailable:
                    logger.warning(
                        "Tradovate session renewal failed; using the current token until it expires"
                    )
                    return token.access_token
                if renewed is not None:
                    return renewed.access_token
            return self._login().access_token

    # The internals below run with the store's renewal lock held.

    def _renew(self, token: TradovateToken) -> TradovateToken | None:
        """The renewed token (stored), or None if refused; BrokerUnavailable if it could not be asked."""
        status, data = self._transport.send("GET", "/auth/renewaccesstoken", token=token.access_token)
        if status == 200 and isinstance(data, dict) and data.get("accessToken") and not _error_in(data):
            renewed = self._token_from(data, source=token.source)
            self._store.put(renewed)
            logger.info("Tradovate session renewed until %s", renewed.expires_at.isoformat())
            return renewed
        if status == 429:
            raise locked_out()
        if status >= 500 or status == 423:
            raise BrokerUnavailable("Tradovate could not renew the session right now. Try again shortly.")
        logger.warning("Tradovate refused to renew the session (HTTP %s)", status)
        return None

    def _login(self) -> TradovateToken:
        """A new token from the username/password request (stored)."""
        credentials = self._credentials
        if credentials is None:
            raise BrokerNeedsAttention(
                "The Tradovate connection has expired and there is no password to log in with. "
                "Connect the account again through OAuth (Connect Tradovate).",
                reason="oauth_expired",
            )
        key = (self.base_url, credentials.name.casefold())
        _login_guard.check(key, self._clock())
        cid: int | str = int(credentials.cid) if str(credentials.cid).isdigit() else credentials.cid
        body = {
            "name": credentials.name,
            "password": credentials.password,
            "appId": credentials.app_id,
            "appVersion": credentials.app_version,
            "cid": cid,
            "sec": credentials.sec,
            "deviceId": credentials.device_id,
        }
        try:
            status, data = self._transport.send("POST", "/auth/accesstokenrequest", body=body)
        except BrokerNeedsAttention as exc:
            if exc.reason == "captcha":
                _login_guard.captcha(key, self._clock())
            raise
        if status == 429:
            raise locked_out()
        if status >= 500 or status == 423:
            raise BrokerUnavailable(
                f"Tradovate could not log in right now (HTTP {status}). Try again shortly.",
                retry_after=SLOW_DOWN_SECONDS if status == 423 else None,
            )
        if status != 200 or not isinstance(data, dict) or not data.get("accessToken") or _error_in(data):
            _login_guard.failed(key, self._clock())
            text = _text_of(data) or f"HTTP {status}"
            logger.warning("Tradovate refused a login (HTTP %s)", status)
            raise BrokerNeedsAttention(
                f"Tradovate refused the login: {text} "
                "Check the username and password, or connect through OAuth.",
                reason="credentials",
            )
        _login_guard.succeeded(key)
        token = self._token_from(data, source="password")
        self._store.put(token)
        logger.info("Tradovate login succeeded; session valid until %s", token.expires_at.isoformat())
        return token

    def _token_from(self, data: dict[str, Any], *, source: Literal["password", "oauth"]) -> TradovateToken:
        try:
            expires_at = _parse_time(data["expirationTime"])
        except (KeyError, ValueError):
            expires_at = self._clock() + OAUTH_DEFAULT_LIFETIME
        user_id = data.get("userId")
        return TradovateToken(
            access_token=str(data["accessToken"]),
            expires_at=expires_at,
            source=source,
            user_id=int(user_id) if user_id is not None else None,
        )

    def _recover_from_unauthorized(self, rejected: str) -> None:
        """After a 401: renew or log in once, unless another worker already replaced the token."""
        with self._store.renewal_lock():
            token = self._store.get()
            now = self._clock()
            if (
                token is not None
                and token.access_token != rejected
                and token.expires_at - now > EXPIRY_SAFETY
            ):
                return
            try:
                if token is not None and token.access_token == rejected and self._renew(token) is not None:
                    return
                self._login()
            except BrokerNeedsAttention:
                if token is not None and token.access_token == rejected:
                    # Tradovate no longer accepts this token: never send it again.
                    self._store.put(replace(token, expires_at=now))
                raise

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        changes_orders: bool,
    ) -> Any:
        token = self.access_token()
        status, data = self._transport.send(
            method, path, body=body, params=params, token=token, changes_orders=changes_orders
        )
        if status == 401:
            logger.info("Tradovate answered 401 to %s %s; getting a fresh session", method, path)
            self._recover_from_unauthorized(token)
            if changes_orders:
                # 401 means Tradovate did not act on it; the caller may send it again with the fresh session.
                raise BrokerUnavailable(
                    "Tradovate refused the request because the session had expired, so nothing was changed. "
                    "The session has been renewed; it is safe to send the request again."
                )
            status, data = self._transport.send(
                method, path, body=body, params=params, token=self.access_token()
            )
            if status == 401:
                raise BrokerNeedsAttention(
                    "Tradovate refuses this login access even with a fresh session. Check that the "
                    "account may trade through the API, or connect it again.",
                    reason="unauthorized",
                )
        return _checked(status, data, method, path, changes_orders)


class _NotFound(BrokerError):
    """Tradovate answered 404 to a read."""


def _checked(status: int, data: Any, method: str, path: str, changes_orders: bool) -> Any:
    """The body of a successful answer, or the BrokerError its status and body call for."""
    if 200 <= status < 300:
        if data is _NOT_JSON:
            if changes_orders:
                raise OrderOutcomeUnknown(
                    "Tradovate's answer could not be read, so the order may or may not have been changed. "
                    "Do not send it again: check the account's orders first."
                )
            raise BrokerUnavailable("Tradovate answered with something that is not JSON. Try again shortly.")
        error = _error_in(data)
        if error:
            reason, text = error
            logger.info("Tradovate refused %s %s: %s", method, path, reason or "error")
            if changes_orders:
                raise OrderRejected(text, reason=reason)
            raise BrokerError(f"Tradovate answered: {text}")
        return data
    text = _text_of(data) or f"HTTP {status}"
    if status == 429:
        raise locked_out()
    if status == 423:
        raise BrokerUnavailable(
            "Tradovate asks us to slow down before it locks this login out; nothing was done. "
            "Try again in a minute.",
            retry_after=SLOW_DOWN_SECONDS,
        )
    if status >= 500 or status < 400:
        logger.warning("Tradovate %s %s answered HTTP %s", method, path, status)
        if changes_orders:
            raise OrderOutcomeUnknown(
                f"Tradovate answered HTTP {status} after receiving the request, so the order may or may "
                "not have been changed. Do not send it again: check the account's orders first."
            )
        raise BrokerUnavailable(f"Tradovate is having trouble (HTTP {status}). Try again shortly.")
    if changes_orders:
        raise OrderRejected(text, reason=f"HTTP {status}")
    if status == 404:
        raise _NotFound(f"Tradovate does not know {path}: {text}")
    raise BrokerError(f"Tradovate refused {path} (HTTP {status}): {text}")


# --- OAuth -------------------------------------------------------------------------------------------------


def authorize_url(oauth_url: str, client_id: str, redirect_uri: str, state: str) -> str:
    """Tradovate's authorize page for our application, carrying the session-bound state."""
    query = urlencode(
        {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "state": state}
    )
    return f"{oauth_url}{'&' if '?' in oauth_url else '?'}{query}"


def exchange_oauth_code(
    live_url: str,
    demo_url: str,
    code: str,
    redirect_uri: str,
    client_id: str,
    client_secret: str,
    *,
    session: requests.Session | None = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], datetime] = utcnow,
) -> tuple[Environment, TradovateToken]:
    """Trade an authorization code for a token; a code belongs to one environment, so try live, then demo."""
    body = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": client_id,
        "client_secret": client_secret,
    }
    refusal = ""
    unreachable = False
    environments: tuple[tuple[Environment, str], ...] = (("live", live_url), ("demo", demo_url))
    for environment, base_url in environments:
        transport = _Transport(base_url, session or shared_session(), timeout, sleep)
        try:
            status, data = transport.send("POST", "/auth/oauthtoken", body=body)
        except BrokerUnavailable:
            unreachable = True
            continue
        if status == 200 and isinstance(data, dict) and data.get("access_token"):
            expires_in = _decimal(data.get("expires_in"))
            lifetime = timedelta(seconds=float(expires_in)) if expires_in else OAUTH_DEFAULT_LIFETIME
            logger.info("Tradovate OAuth code exchanged on %s", environment)
            return environment, TradovateToken(
                access_token=str(data["access_token"]), expires_at=clock() + lifetime, source="oauth"
            )
        if status >= 500:
            unreachable = True
            continue
        refusal = _text_of(data) or f"HTTP {status}"
        logger.info("Tradovate %s refused the OAuth code (HTTP %s)", environment, status)
    if unreachable:
        raise BrokerUnavailable(
            "Tradovate could not be reached to finish connecting the account. Try connecting again."
        )
    raise BrokerNeedsAttention(
        f"Tradovate did not accept the authorization: {refusal} Start the connection again.",
        reason="oauth_refused",
    )


# --- symbols and contracts ---------------------------------------------------------------------------------


_MONTH_CODES = "FGHJKMNQUVXZ"
_CONTINUOUS = re.compile(r"^(?P<root>[A-Z0-9]+?)(?P<nth>[1-9])!$")
_DATED = re.compile(rf"^(?P<root>[A-Z0-9]*[A-Z][A-Z0-9]*?)(?P<month>[{_MONTH_CODES}])(?P<year>\d{{1,4}})$")
_ROOT = re.compile(r"^[A-Z0-9]*[A-Z][A-Z0-9]*$")


@dataclass(frozen=True)
class SymbolRef:
    """A TradingView or Tradovate symbol understood: its root and either a contract name or the nth month."""

    root: str
    contract_name: str | None
    nth: int = 1


def parse_symbol(symbol: str) -> SymbolRef:
    """`ES`, `ES1!`, `CME_MINI:ES1!`, `ESZ2026` or `ESZ6`, as Tradovate would look them up."""
    text = symbol.strip().upper().rsplit(":", 1)[-1]
    if match := _CONTINUOUS.match(text):
        return SymbolRef(root=match["root"], contract_name=None, nth=int(match["nth"]))
    if (match := _DATED.match(text)) and len(match["year"]) != 3:
        # Tradovate names a contract with a one-digit year: ESZ2026 and ESZ26 are both ESZ6.
        return SymbolRef(
            root=match["root"], contract_name=f"{match['root']}{match['month']}{match['year'][-1]}"
        )
    if _ROOT.match(text) and len(text) <= 6:
        return SymbolRef(root=text, contract_name=None)
    raise ValueError(f"{symbol!r} is not a futures symbol Tradovate can trade (try ES, ES1! or ESZ6).")


@dataclass(frozen=True)
class _Contract:
    id: int
    name: str


class _ContractCache:
    """Contracts resolved in this process, per Tradovate environment."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_name: dict[tuple[str, str], _Contract] = {}
        self._by_id: dict[tuple[str, int], _Contract] = {}
        self._front: dict[tuple[str, str, int], tuple[_Contract, float]] = {}

    def remember(self, base_url: str, contract: _Contract) -> None:
        with self._lock:
            self._by_name[(base_url, contract.name)] = contract
            self._by_id[(base_url, contract.id)] = contract

    def by_name(self, base_url: str, name: str) -> _Contract | None:
        with self._lock:
            return self._by_name.get((base_url, name))

    def by_id(self, base_url: str, contract_id: int) -> _Contract | None:
        with self._lock:
            return self._by_id.get((base_url, contract_id))

    def front(self, base_url: str, root: str, nth: int) -> _Contract | None:
        with self._lock:
            cached = self._front.get((base_url, root, nth))
        if cached and cached[1] > time.monotonic():
            return cached[0]
        return None

    def remember_front(self, base_url: str, root: str, nth: int, contract: _Contract) -> None:
        self.remember(base_url, contract)
        with self._lock:
            self._front[(base_url, root, nth)] = (contract, time.monotonic() + FRONT_MONTH_CACHE_SECONDS)


class _VersionCache:
    """Order versions of finished orders, which never change again (bounded, least recently used goes)."""

    def __init__(self, size: int) -> None:
        self._lock = threading.Lock()
        self._size = size
        self._items: OrderedDict[tuple[str, str], list[dict[str, Any]]] = OrderedDict()

    def get(self, key: tuple[str, str]) -> list[dict[str, Any]] | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: tuple[str, str], versions: list[dict[str, Any]]) -> None:
        with self._lock:
            self._items[key] = versions
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


_contracts = _ContractCache()
_versions = _VersionCache(ORDER_VERSION_CACHE_SIZE)

_STATUSES: dict[str, OrderStatus] = {
    "PendingNew": OrderStatus.PENDING,
    # A bracket leg waits as Suspended until its entry fills.
    "Suspended": OrderStatus.PENDING,
    "Working": OrderStatus.WORKING,
    "PendingReplace": OrderStatus.WORKING,
    "PendingCancel": OrderStatus.WORKING,
    "Filled": OrderStatus.FILLED,
    "Completed": OrderStatus.FILLED,
    "Canceled": OrderStatus.CANCELLED,
    "Expired": OrderStatus.CANCELLED,
    "Rejected": OrderStatus.REJECTED,
    "Unknown": OrderStatus.UNKNOWN,
}
_FINAL_STATUSES = frozenset({"Filled", "Completed", "Canceled", "Expired", "Rejected"})


def _list(data: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(data, list):
        raise BrokerError(f"Tradovate's {what} answer was not a list.")
    return [row for row in data if isinstance(row, dict)]


# --- broker ------------------------------------------------------------------------------------------------


class TradovateBroker(Broker):
    """The Broker interface over Tradovate's REST API."""

    def __init__(self, client: TradovateClient) -> None:
        self.client = client

    # Accounts and money.

    def list_accounts(self) -> list[SubAccount]:
        """Every sub-account of the login."""
        return [
            SubAccount(
                id=str(row["id"]),
                name=str(row.get("name") or row["id"]),
                active=bool(row.get("active", True)),
            )
            for row in _list(self.client.get("/account/list"), "account list")
        ]

    def account_balance(self, account_id: str) -> AccountBalance:
        """A cash balance snapshot of one account."""
        data = self.client.post(
            "/cashBalance/getcashbalancesnapshot",
            {"accountId": _numeric_id(account_id, "account id")},
            changes_orders=False,
        )
        if not isinstance(data, dict):
            raise BrokerError("Tradovate's cash balance answer was not an object.")
        return AccountBalance(
            account_id=account_id,
            cash_balance=_decimal(data.get("totalCashValue")),
            net_liquidation=_decimal(data.get("netLiq")),
            realized_pnl=_decimal(data.get("realizedPnL")),
            open_pnl=_decimal(data.get("openPnL")),
        )

    # Orders.

    def place_order(self, order: OrderRequest) -> PlacedOrder:
        """POST /order/placeorder."""
        body = self._order_body(order)
        data = self.client.post("/order/placeorder", body, changes_orders=True)
        placed = PlacedOrder(broker_order_id=self._required_id(data, "orderId", order.client_id))
        logger.info("Tradovate order %s placed as %s", order.client_id, placed.broker_order_id)
        return placed

    def place_bracket(self, bracket: BracketRequest) -> PlacedBracket:
        """One POST /order/placeoso: bracket1 is the take-profit, bracket2 the stop (or bracket1 if alone)."""
        legs = [leg for leg in (bracket.take_profit, bracket.stop_loss) if leg is not None]
        if not legs:
            return PlacedBracket(self.place_order(bracket.entry).broker_order_id, None, None)
        body = self._order_body(bracket.entry)
        for number, leg in enumerate(legs, start=1):
            body[f"bracket{number}"] = self._leg_body(leg, bracket.exit_action)
        data = self.client.post("/order/placeoso", body, changes_orders=True)
        entry_id = self._required_id(data, "orderId", bracket.entry.client_id)
        leg_ids = [
            self._required_id(data, f"oso{number}Id", leg.client_id) for number, leg in enumerate(legs, 1)
        ]
        take_profit_id = leg_ids[0] if bracket.take_profit else None
        stop_loss_id = leg_ids[-1] if bracket.stop_loss else None
        logger.info("Tradovate bracket %s placed as %s", bracket.entry.client_id, entry_id)
        return PlacedBracket(entry_id=entry_id, take_profit_id=take_profit_id, stop_loss_id=stop_loss_id)

    def place_oco(self, order: OrderRequest, other: OrderRequest) -> PlacedOco:
        """One POST /order/placeoco: `other` goes in the bracket shape and shares `order`'s quantity."""
        check_oco_pair(order, other)
        body = self._order_body(order)
        body["other"] = self._leg_body(
            BracketLeg(
                client_id=other.client_id,
                order_type=other.order_type,
                price=other.price,
                stop_price=other.stop_price,
                trail_distance=other.trail_distance,
                time_in_force=other.time_in_force,
            ),
            other.action,
        )
        data = self.client.post("/order/placeoco", body, changes_orders=True)
        placed = PlacedOco(
            order_id=self._required_id(data, "orderId", order.client_id),
            other_id=self._required_id(data, "ocoId", other.client_id),
        )
        logger.info(
            "Tradovate OCO %s/%s placed as %s/%s", order.client_id, other.client_id, *vars(placed).values()
        )
        return placed

    def modify_order(
        self,
        broker_order_id: str,
        *,
        quantity: int,
        price: Decimal | None,
        stop_price: Decimal | None,
        order_type: OrderType,
        time_in_force: TimeInForce = "GTC",
    ) -> None:
        """POST /order/modifyorder; a command id proves nothing: read the order back to see the change."""
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
            raise ValueError(f"quantity must be a positive whole number of contracts, not {quantity!r}.")
        body: dict[str, Any] = {
            "orderId": _numeric_id(broker_order_id, "order id"),
            "orderQty": quantity,
            "orderType": order_type,
        }
        if price is not None:
            body["price"] = price
        if stop_price is not None:
            body["stopPrice"] = stop_price
        body["timeInForce"] = time_in_force
        body["isAutomated"] = True
        self.client.post("/order/modifyorder", body, changes_orders=True)

    def cancel_order(self, broker_order_id: str) -> None:
        """POST /order/cancelorder."""
        body = {"orderId": _numeric_id(broker_order_id, "order id"), "isAutomated": True}
        self.client.post("/order/cancelorder", body, changes_orders=True)

    def liquidate_position(self, account_id: str, symbol: str) -> PlacedOrder | None:
        """POST /order/liquidateposition for the symbol's contract (for a root: every open contract of it)."""
        account = _numeric_id(account_id, "account id")
        contracts = self._contracts_to_liquidate(account_id, symbol)
        placed: PlacedOrder | None = None
        for contract in contracts:
            data = self.client.post(
                "/order/liquidateposition",
                {"accountId": account, "contractId": contract.id, "admin": False},
                changes_orders=True,
            )
            order_id = _id(data.get("orderId")) if isinstance(data, dict) else None
            logger.info("Tradovate liquidation of %s on %s: order %s", contract.name, account_id, order_id)
            if placed is None and order_id is not None:
                placed = PlacedOrder(broker_order_id=order_id)
        return placed

    # Reading.

    def list_positions(self, account_id: str) -> list[BrokerPosition]:
        """Non-flat positions of one account (Tradovate lists every account of the login)."""
        positions = []
        for row in _list(self.client.get("/position/list"), "position list"):
            quantity = int(row.get("netPos") or 0)
            if str(row.get("accountId")) != account_id or quantity == 0:
                continue
            positions.append(
                BrokerPosition(
                    account_id=account_id,
                    symbol=self._contract_by_id(int(row["contractId"])).name,
                    quantity=quantity,
                    avg_price=_decimal(row.get("netPrice")),
                )
            )
        return positions

    def list_orders(self, account_id: str) -> list[BrokerOrder]:
        """Orders of one account, newest first, with quantity, prices and client id from their versions."""
        return [self._order(row) for row in self._order_rows(account_id)]

    def find_order_by_client_id(self, account_id: str, client_id: str) -> BrokerOrder | None:
        """The order Tradovate holds under our client id (settles an unknown outcome), or None."""
        for row in self._order_rows(account_id):
            if _client_id(self._versions(row)) == client_id:
                return self._order(row)
        return None

    def list_fills(self, account_id: str) -> list[BrokerFill]:
        """Fills of one account (fills name only their order, so orders say whose they are)."""
        fills = _list(self.client.get("/fill/list"), "fill list")
        orders = {str(row["id"]): row for row in self._order_rows(account_id)}
        result = []
        for row in fills:
            order_id = str(row.get("orderId"))
            if order_id not in orders:
                continue
            contract_id = row.get("contractId") or orders[order_id].get("contractId")
            result.append(
                BrokerFill(
                    broker_fill_id=str(row["id"]),
                    broker_order_id=order_id,
                    account_id=account_id,
                    symbol=self._contract_by_id(int(contract_id)).name,
                    action=_action(row.get("action") or orders[order_id].get("action")),
                    quantity=int(row.get("qty") or 0),
                    price=_decimal(row.get("price")) or Decimal(0),
                    timestamp=_optional_time(row.get("timestamp")),
                )
            )
        return result

    # Contract resolution.

    def resolve_contract(self, symbol: str) -> tuple[int, str]:
        """The (contract id, contract name) Tradovate trades for a symbol, cached per process."""
        contract = self._contract(symbol)
        return contract.id, contract.name

    def _contract(self, symbol: str) -> _Contract:
        try:
            ref = parse_symbol(symbol)
        except ValueError as exc:
            raise OrderRejected(str(exc), reason="InvalidContract") from None
        base_url = self.client.base_url
        if ref.contract_name is not None:
            contract = _contracts.by_name(base_url, ref.contract_name)
            if contract is None:
                try:
                    data = self.client.get("/contract/find", {"name": ref.contract_name})
                except _NotFound:
                    data = None
                if not isinstance(data, dict) or not data.get("id"):
                    raise OrderRejected(
                        f"Tradovate has no contract named {ref.contract_name}.", reason="InvalidContract"
                    )
                contract = _Contract(id=int(data["id"]), name=str(data["name"]))
                _contracts.remember(base_url, contract)
            return contract
        contract = _contracts.front(base_url, ref.root, ref.nth)
        if contract is None:
            try:
                suggestions = _list(
                    self.client.get("/contract/suggest", {"t": ref.root, "l": 5}), "contract list"
                )
            except _NotFound:
                suggestions = []
            # Suggest is a text search: keep only contracts of exactly this root, front month first.
            pattern = re.compile(rf"^{re.escape(ref.root)}[{_MONTH_CODES}]\d$")
            months = [row for row in suggestions if pattern.match(str(row.get("name", "")))]
            if len(months) < ref.nth:
                raise OrderRejected(
                    f"Tradovate lists no tradable contract for {ref.root}.", reason="InvalidContract"
                )
            row = months[ref.nth - 1]
            contract = _Contract(id=int(row["id"]), name=str(row["name"]))
            _contracts.remember_front(base_url, ref.root, ref.nth, contract)
        return contract

    def _contract_by_id(self, contract_id: int) -> _Contract:
        contract = _contracts.by_id(self.client.base_url, contract_id)
        if contract is None:
            data = self.client.get("/contract/item", {"id": contract_id})
            if not isinstance(data, dict) or not data.get("name"):
                raise BrokerError(f"Tradovate did not describe contract {contract_id}.")
            contract = _Contract(id=contract_id, name=str(data["name"]))
            _contracts.remember(self.client.base_url, contract)
        return contract

    def _contracts_to_liquidate(self, account_id: str, symbol: str) -> list[_Contract]:
        try:
            ref = parse_symbol(symbol)
        except ValueError as exc:
            raise OrderRejected(str(exc), reason="InvalidContract") from None
        if ref.contract_name is not None:
            return [self._contract(symbol)]
        # After a roll-over the open position can sit in last month's contract: close what is open, by root.
        held = [
            position
            for position in self.list_positions(account_id)
            if (held_ref := parse_symbol(position.symbol)).root == ref.root and held_ref.contract_name
        ]
        if held:
            return [self._contract(position.symbol) for position in held]
        return [self._contract(symbol)]

    # JSON of orders.

    def _order_body(self, order: OrderRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "accountSpec": order.account_spec,
            "accountId": _numeric_id(order.account_id, "account id"),
            "clOrdId": order.client_id,
            "action": order.action,
            "symbol": self._contract(order.symbol).name,
            "orderQty": order.quantity,
            "orderType": order.order_type,
        }
        _add_prices(body, order.price, order.stop_price, order.trail_distance)
        body["timeInForce"] = order.time_in_force
        body["isAutomated"] = True
        return body

    @staticmethod
    def _leg_body(leg: BracketLeg, action: OrderAction) -> dict[str, Any]:
        body: dict[str, Any] = {"action": action, "orderType": leg.order_type}
        _add_prices(body, leg.price, leg.stop_price, leg.trail_distance)
        body["timeInForce"] = leg.time_in_force
        body["clOrdId"] = leg.client_id
        return body

    @staticmethod
    def _required_id(data: Any, key: str, client_id: str) -> str:
        order_id = _id(data.get(key)) if isinstance(data, dict) else None
        if order_id is None:
            raise OrderOutcomeUnknown(
                f"Tradovate accepted order {client_id} without saying its id ({key}). Do not send it again: "
                "check the account's orders first."
            )
        return order_id

    def _order_rows(self, account_id: str) -> list[dict[str, Any]]:
        rows = [
            row
            for row in _list(self.client.get("/order/list"), "order list")
            if str(row.get("accountId")) == account_id
        ]
        return sorted(rows, key=lambda row: int(row["id"]), reverse=True)

    def _versions(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        key = (self.client.base_url, str(row["id"]))
        cached = _versions.get(key)
        if cached is not None:
            return cached
        versions = _list(self.client.get("/orderVersion/deps", {"masterid": row["id"]}), "order version list")
        versions.sort(key=lambda version: int(version.get("id") or 0))
        if row.get("ordStatus") in _FINAL_STATUSES:
            _versions.put(key, versions)
        return versions

    def _order(self, row: dict[str, Any]) -> BrokerOrder:
        versions = self._versions(row)
        latest = versions[-1] if versions else {}
        raw_status = str(row.get("ordStatus") or "Unknown")
        quantity = latest.get("orderQty")
        return BrokerOrder(
            broker_order_id=str(row["id"]),
            account_id=str(row["accountId"]),
            symbol=self._contract_by_id(int(row["contractId"])).name,
            action=_action(row.get("action")),
            order_type=latest.get("orderType"),
            quantity=int(quantity) if quantity is not None else None,
            price=_decimal(latest.get("price")),
            stop_price=_decimal(latest.get("stopPrice")),
            status=_STATUSES.get(raw_status, OrderStatus.UNKNOWN),
            client_id=_client_id(versions),
            oco_id=_id(row.get("ocoId")),
            parent_id=_id(row.get("parentId")),
            raw_status=raw_status,
        )


def _add_prices(
    body: dict[str, Any], price: Decimal | None, stop_price: Decimal | None, trail_distance: Decimal | None
) -> None:
    if price is not None:
        body["price"] = price
    if stop_price is not None:
        body["stopPrice"] = stop_price
    if trail_distance is not None:
        body["pegDifference"] = trail_distance


def _client_id(versions: list[dict[str, Any]]) -> str | None:
    # A modification adds a version that may not repeat the clOrdId: any version that carries it counts.
    for version in versions:
        if version.get("clOrdId"):
            return str(version["clOrdId"])
    return None


def _action(value: object) -> OrderAction:
    if value == "Buy":
        return "Buy"
    if value == "Sell":
        return "Sell"
    raise BrokerError(f"Tradovate reported an order side {value!r} we do not understand.")
