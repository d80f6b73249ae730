"""TradingView client: the only code that talks to TradingView (see shared/specs/tradingview.md)."""

from __future__ import annotations

import functools
import http.cookiejar
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Concatenate, Literal, ParamSpec, Protocol, TypeVar, cast
from urllib.parse import urlencode, urlsplit

import requests

if TYPE_CHECKING:
    from collections.abc import Iterable

logger = logging.getLogger("pineaccess.tradingview")

SIGN_IN_PATH = "/accounts/signin/"
SESSION_CHECK_PATH = "/tvcoins/details/"
USERNAME_HINT_PATH = "/username_hint/"
LIST_USERS_PATH = "/pine_perm/list_users/"
ADD_ACCESS_PATH = "/pine_perm/add/"
MODIFY_EXPIRATION_PATH = "/pine_perm/modify_user_expiration/"
REMOVE_ACCESS_PATH = "/pine_perm/remove/"
LIST_SCRIPTS_PATH = "/pine_perm/list_scripts/"
SCRIPT_NAMES_PATH = "/pubscripts-get/"

# TradingView may answer a larger limit with 400 bad_pagination_request.
PAGE_SIZE = 20
LIST_USERS_ORDERINGS = (
    "user__username",
    "-user__username",
    "created",
    "-created",
    "expiration,user__username",
    "-expiration,user__username",
)
SESSION_COOKIE_NAMES = ("sessionid", "sessionid_sign")
WRONG_CREDENTIALS_OR_PINE_ID = "Wrong credentials or pineId"
PINE_ID_RE = re.compile(r"^PUB;[0-9a-fA-F]{32}$")
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
# A cookie-octet as RFC 6265 defines it: no whitespace, quotes, commas, semicolons or backslashes.
_COOKIE_VALUE_RE = re.compile(r"^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]+$")
_MAX_PAGES = 10_000
_MAX_RETRY_AFTER_SECONDS = 60.0
_PASTE_COOKIE_HINT = (
    "sign in to TradingView in a browser and paste its sessionid and sessionid_sign cookies in the admin "
    "or with `python manage.py tv_session --sessionid ... --sessionid-sign ...`"
)

AddStatus = Literal["ok", "exists"]
RemoveStatus = Literal["ok", "not_exists"]


# --------------------------------------------------------------------------------------------------- errors


class TradingViewError(Exception):
    """Base class of every TradingView failure; `summary` is short text fit for an audit log."""

    transient: ClassVar[bool] = False

    def __init__(self, message: str, *, summary: str, detail: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.summary = summary if len(summary) <= 200 else f"{summary[:199]}…"
        self.detail = detail
        self.status = status

    def __reduce__(self) -> tuple:
        # Celery pickles task errors; the keyword-only constructor would otherwise make them unpicklable.
        return (_rebuild_error, (type(self), self.args, self.__dict__))


def _rebuild_error(cls: type[TradingViewError], args: tuple, state: dict) -> TradingViewError:
    """Recreate a pickled TradingViewError without calling its constructor."""
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class UserNotFound(TradingViewError):
    """No TradingView user has exactly this username."""


class AlreadyHasAccess(TradingViewError):
    """TradingView says the user already has access but does not list them, so the expiry was not set."""


class ScriptNotAccessible(TradingViewError):
    """TradingView refused the request for this script id and username ("Wrong credentials or pineId")."""


class SessionExpired(TradingViewError):
    """TradingView refused the session cookies and signing in again did not help."""


class CaptchaRequired(TradingViewError):
    """TradingView wants a captcha solved before it lets the account sign in."""


class TwoFactorRequired(TradingViewError):
    """TradingView wants a two-factor code before it lets the account sign in."""

    def __init__(self, message: str, *, summary: str, types: tuple[str, ...]):
        super().__init__(message, summary=summary)
        self.types = types


class InvalidCredentials(TradingViewError):
    """TradingView rejected the username or password (or none are configured)."""


class RateLimited(TradingViewError):
    """TradingView asked us to slow down."""

    transient = True


class TradingViewUnavailable(TradingViewError):
    """TradingView could not be reached or kept failing (connection errors, timeouts, 5xx)."""

    transient = True


class UnexpectedAnswer(TradingViewError):
    """TradingView answered something the spec does not describe; never treated as success."""


# ----------------------------------------------------------------------------------------------- data types


class TradingViewSessionStore(Protocol):
    """Where the TradingView session cookies live between calls and processes."""

    def load(self) -> dict[str, str] | None:
        """Return the saved cookies (sessionid, sessionid_sign) or None."""

    def save(self, cookies: dict[str, str]) -> None:
        """Replace the saved cookies."""

    def clear(self) -> None:
        """Forget the saved cookies."""


class MemorySessionStore:
    """A session store in process memory, for tests and scripts."""

    def __init__(self, cookies: Mapping[str, str] | None = None):
        self._lock = threading.Lock()
        self._cookies: dict[str, str] | None = dict(cookies) if cookies else None

    def load(self) -> dict[str, str] | None:
        """Return a copy of the saved cookies or None."""
        with self._lock:
            return dict(self._cookies) if self._cookies else None

    def save(self, cookies: dict[str, str]) -> None:
        """Replace the saved cookies."""
        with self._lock:
            self._cookies = dict(cookies)

    def clear(self) -> None:
        """Forget the saved cookies."""
        with self._lock:
            self._cookies = None


@dataclass(frozen=True)
class ScriptUser:
    """One row of a script's access list on TradingView; expiration None means lifetime."""

    id: int
    username: str
    expiration: datetime | None
    created: datetime | None


class GrantAction(StrEnum):
    """What a safe grant did on TradingView."""

    ADDED = "added"
    MODIFIED = "modified"
    UNCHANGED = "unchanged"
    REPLACED = "replaced"


@dataclass(frozen=True)
class GrantResult:
    """The outcome of grant_access: the action taken and the expiry TradingView now holds (None: lifetime)."""

    action: GrantAction
    pine_id: str
    username: str
    expiration: datetime | None
    previous: ScriptUser | None

    @property
    def summary(self) -> str:
        """Short text for the audit log."""
        until = describe_expiration(self.expiration)
        if self.action is GrantAction.ADDED:
            return f"added {self.username} to {self.pine_id}, {until}"
        if self.action is GrantAction.MODIFIED:
            before = describe_expiration(self.previous.expiration if self.previous else None)
            return f"changed {self.username} on {self.pine_id} from {before} to {until}"
        if self.action is GrantAction.REPLACED:
            return f"replaced lifetime access of {self.username} on {self.pine_id} with {until}"
        return f"{self.username} keeps {until} on {self.pine_id}"


# ------------------------------------------------------------------------------------------- pure helpers


def format_expiration(expiration: datetime) -> str:
    """Format an aware datetime the way TradingView expects it: 2026-12-31T23:59:59.000Z (UTC)."""
    if expiration.tzinfo is None or expiration.utcoffset() is None:
        raise ValueError("The expiration must be a timezone-aware datetime.")
    utc = expiration.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def parse_expiration(value: str) -> datetime:
    """Parse TradingView's 2026-12-31T23:59:59.999000+00:00 form (or ...Z) into an aware UTC datetime."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        # TradingView always answers in UTC; a missing offset still means UTC.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def describe_expiration(expiration: datetime | None) -> str:
    """Say an expiry in words for messages: 'lifetime' or 'until <UTC time>'."""
    return "lifetime" if expiration is None else f"until {format_expiration(expiration)}"


def is_pine_id(value: str) -> bool:
    """Tell whether a text is a TradingView script id: PUB; followed by 32 hexadecimal characters."""
    return bool(PINE_ID_RE.match(value))


def _require_pine_id(pine_id: str) -> None:
    if not is_pine_id(pine_id):
        raise ValueError(
            f"{pine_id!r} is not a TradingView script id: it must be PUB; followed by 32 hexadecimal "
            "characters."
        )


def _require_username(username: str) -> str:
    cleaned = username.strip()
    if not cleaned:
        raise ValueError("A TradingView username is required.")
    return cleaned


def _clean_cookie(name: str, value: str) -> str:
    cleaned = value.strip().removeprefix(f"{name}=").strip()
    if not cleaned or not _COOKIE_VALUE_RE.match(cleaned):
        raise ValueError(
            f"The {name} cookie value is empty or contains spaces, quotes, commas or semicolons; "
            "copy only the cookie's value from the browser."
        )
    return cleaned


def _session_cookies(cookies: Mapping[str, str] | None) -> dict[str, str] | None:
    if not cookies or not cookies.get("sessionid"):
        return None
    return {name: cookies[name] for name in SESSION_COOKIE_NAMES if cookies.get(name)}


def _cookie_header(cookies: Mapping[str, str]) -> str:
    return "; ".join(f"{name}={cookies[name]}" for name in SESSION_COOKIE_NAMES if cookies.get(name))


def _is_html(response: requests.Response) -> bool:
    if "html" in response.headers.get("Content-Type", "").lower():
        return True
    return response.content.lstrip()[:1] == b"<"


def _is_refusal(response: requests.Response) -> bool:
    return response.status_code in (401, 403) or (200 <= response.status_code < 300 and _is_html(response))


_NO_JSON = object()


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return _NO_JSON


def _detail(response: requests.Response) -> str | None:
    answer = _json(response)
    if isinstance(answer, dict) and isinstance(answer.get("detail"), str):
        return answer["detail"]
    return None


def _short_answer(response: requests.Response, limit: int = 200) -> str:
    if _is_html(response):
        return f"<HTML page, {len(response.content)} bytes>"
    text = " ".join(response.text.split())
    return text if len(text) <= limit else f"{text[:limit]}…"


def _describe_failure(exc: BaseException) -> str:
    """Say why a request failed in a few words, e.g. 'ConnectionError: [Errno 111] Connection refused'."""
    text = " ".join(str(exc).split())
    errno = re.search(r"\[Errno -?\d+\] [^'\")\]]+", text)
    disconnected = re.search(r"RemoteDisconnected\('([^']+)'", text)
    if errno:
        detail = errno.group(0)
    elif disconnected:
        detail = disconnected.group(1)
    else:
        detail = text.rsplit("): ", 1)[-1] or type(exc).__name__
    return f"{type(exc).__name__}: {detail[:120]}"


def _loggable_form(data: Mapping[str, str] | None) -> str:
    if not data:
        return ""
    return " " + " ".join(
        f"{key}={'***' if key in ('password', 'code') else value}" for key, value in data.items()
    )


def _parse_time(value: Any, *, field: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{field} is not a text")
    return parse_expiration(value)


def _parse_script_user(row: Any) -> ScriptUser:
    if not isinstance(row, dict):
        raise ValueError("a result is not an object")
    user_id, username = row.get("id"), row.get("username")
    if (
        not isinstance(user_id, int)
        or isinstance(user_id, bool)
        or not isinstance(username, str)
        or not username
    ):
        raise ValueError("a result has no numeric id or no username")
    if "expiration" not in row:
        raise ValueError(f"the result for {username} has no expiration field")
    expiration = row["expiration"]
    created = row.get("created")
    return ScriptUser(
        id=user_id,
        username=username,
        expiration=None if expiration is None else _parse_time(expiration, field="expiration"),
        created=None if created is None else _parse_time(created, field="created"),
    )


def _next_page_path(next_page: str) -> str:
    # Only the path and query are used: the cookies must never follow a link to another host.
    parts = urlsplit(next_page)
    if not parts.path.startswith("/"):
        raise ValueError(f"next is not a path: {next_page!r}")
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


P = ParamSpec("P")
R = TypeVar("R")


def _operation(
    method: Callable[Concatenate[TradingViewClient, P], R],
) -> Callable[Concatenate[TradingViewClient, P], R]:
    """Mark a public call: however many requests it makes, it signs in at most once."""

    @functools.wraps(method)
    def wrapper(self: TradingViewClient, *args: P.args, **kwargs: P.kwargs) -> R:
        if self._operation_depth == 0:
            self._signed_in_during_operation = False
        self._operation_depth += 1
        try:
            return method(self, *args, **kwargs)
        finally:
            self._operation_depth -= 1

    return wrapper


class _RejectAllCookies(http.cookiejar.DefaultCookiePolicy):
    """Keep the shared jar empty: session cookies live in the store and go out in one explicit header."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        """Refuse every cookie."""
        return False


# ------------------------------------------------------------------------------------------------- client


class TradingViewClient:
    """Drives TradingView's "Manage access" endpoints for one seller account; one per thread or task."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        session_store: TradingViewSessionStore,
        *,
        timeout: float | tuple[float, float] = (5, 20),
        max_attempts: int = 4,
        backoff_seconds: float = 1.0,
        sleep: Callable[[float], Any] = time.sleep,
    ):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1.")
        parts = urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                "TRADINGVIEW_URL must be an http(s) address such as https://www.tradingview.com, "
                f"not {base_url!r}."
            )
        self.base_url = base_url.strip().rstrip("/")
        self.username = username.strip()
        self._password = password
        self._store = session_store
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._backoff_seconds = backoff_seconds
        self._sleep = sleep
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._http = requests.Session()
        self._http.headers["User-Agent"] = USER_AGENT
        self._http.cookies.set_policy(_RejectAllCookies())
        self._cookies: dict[str, str] | None = None
        self._cookies_loaded = False
        self._operation_depth = 0
        self._signed_in_during_operation = False

    def __repr__(self) -> str:
        return f"<TradingViewClient {self.username!r} at {self.base_url}>"

    def __enter__(self) -> TradingViewClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    # ------------------------------------------------------------------------------------------ session

    @_operation
    def sign_in(self) -> str:
        """Sign in with the username and password, save the session cookies, return the account's username."""
        signed_in_as, _cookies = self._sign_in()
        return signed_in_as

    def session_is_valid(self) -> bool:
        """Tell whether TradingView accepts the current session cookies (never signs in)."""
        cookies = self._current_cookies()
        if cookies is None:
            return False
        return self._session_accepted(cookies)

    def use_session_cookies(self, sessionid: str, sessionid_sign: str | None = None) -> None:
        """Check cookies pasted from a logged-in browser with TradingView and save them when they work."""
        cookies = {"sessionid": _clean_cookie("sessionid", sessionid)}
        if sessionid_sign:
            cookies["sessionid_sign"] = _clean_cookie("sessionid_sign", sessionid_sign)
        if not self._session_accepted(cookies):
            raise SessionExpired(
                "TradingView did not accept the pasted session cookies. Copy fresh sessionid and "
                "sessionid_sign values from a browser that is logged in to the seller's TradingView "
                "account and try again.",
                summary="pasted session cookies refused",
            )
        self._store.save(cookies)
        self._cookies, self._cookies_loaded = cookies, True
        logger.info("Saved a pasted TradingView session after TradingView accepted it")

    # ----------------------------------------------------------------------------------------- users

    def username_hint(self, text: str) -> str | None:
        """Return TradingView's spelling of the user named exactly `text` (any case), or None."""
        wanted = text.strip()
        if not wanted:
            return None
        answer = self._public_call("GET", USERNAME_HINT_PATH, params={"s": wanted})
        if not isinstance(answer, list):
            raise self._shape_error("GET", USERNAME_HINT_PATH, "the answer is not a list of users", answer)
        for item in answer:
            name = item.get("username") if isinstance(item, dict) else None
            if isinstance(name, str) and name.casefold() == wanted.casefold():
                return name
        return None

    def resolve_username(self, text: str) -> str:
        """Return TradingView's spelling of the username, or raise UserNotFound."""
        found = self.username_hint(text)
        if found is None:
            raise UserNotFound(
                f'There is no TradingView user named "{text.strip()}". Check the spelling: it is the name '
                "shown on the user's TradingView profile page.",
                summary=f"TradingView user {text.strip()!r} not found",
            )
        return found

    # --------------------------------------------------------------------------------------- access

    @_operation
    def list_users(
        self, pine_id: str, username: str | None = None, *, order_by: str = "user__username"
    ) -> list[ScriptUser]:
        """Return everyone with access to the script (all pages); `username` filters as TradingView does."""
        _require_pine_id(pine_id)
        if order_by not in LIST_USERS_ORDERINGS:
            raise ValueError(f"order_by must be one of {', '.join(LIST_USERS_ORDERINGS)}.")
        form = {"pine_id": pine_id}
        if username is not None:
            form["username"] = _require_username(username)
        path = LIST_USERS_PATH
        params: dict[str, Any] | None = {"limit": PAGE_SIZE, "order_by": order_by}
        users: list[ScriptUser] = []
        seen_pages: set[str] = set()
        for _page in range(_MAX_PAGES):
            answer = self._call(
                "POST", path, params=params, data=form, subject=f"list the users of {pine_id}"
            )
            try:
                if not isinstance(answer, dict) or not isinstance(answer.get("results"), list):
                    raise ValueError("the answer has no results list")
                users.extend(_parse_script_user(row) for row in answer["results"])
                next_page = answer.get("next")
                if next_page is None:
                    return users
                if not isinstance(next_page, str):
                    raise ValueError("next is neither a path nor null")
                path, params = _next_page_path(next_page), None
            except ValueError as exc:
                raise self._shape_error("POST", LIST_USERS_PATH, str(exc), answer) from None
            if path in seen_pages:
                raise self._shape_error(
                    "POST", LIST_USERS_PATH, f"next points back to a page already read ({path})"
                )
            seen_pages.add(path)
        raise self._shape_error("POST", LIST_USERS_PATH, f"more than {_MAX_PAGES} pages of users")

    @_operation
    def find_user(self, pine_id: str, username: str) -> ScriptUser | None:
        """Return the access row of exactly this user (any case) on the script, or None."""
        wanted = _require_username(username).casefold()
        for user in self.list_users(pine_id, username):
            if user.username.casefold() == wanted:
                return user
        return None

    @_operation
    def add_access(self, pine_id: str, username: str, expiration: datetime | None) -> AddStatus:
        """Give the user access ("ok"), or report "exists" when they already have it (expiry NOT changed)."""
        form = self._access_form(pine_id, username, expiration)
        answer = self._call(
            "POST", ADD_ACCESS_PATH, data=form, subject=f"give {username} access to {pine_id}"
        )
        return cast(AddStatus, self._status(answer, ("ok", "exists"), "POST", ADD_ACCESS_PATH))

    @_operation
    def modify_expiration(self, pine_id: str, username: str, expiration: datetime | None) -> None:
        """Change the expiry of a user who has access; None makes it lifetime."""
        form = self._access_form(pine_id, username, expiration)
        answer = self._call(
            "POST", MODIFY_EXPIRATION_PATH, data=form, subject=f"change the expiry of {username} on {pine_id}"
        )
        self._status(answer, ("ok",), "POST", MODIFY_EXPIRATION_PATH)

    @_operation
    def remove_access(self, pine_id: str, username: str) -> RemoveStatus:
        """Take the user's access away ("ok"), or report "not_exists" when they had none."""
        form = self._access_form(pine_id, username, None)
        answer = self._call(
            "POST", REMOVE_ACCESS_PATH, data=form, subject=f"remove {username} from {pine_id}"
        )
        return cast(RemoveStatus, self._status(answer, ("ok", "not_exists"), "POST", REMOVE_ACCESS_PATH))

    @_operation
    def grant_access(
        self, pine_id: str, username: str, expiration: datetime | None, *, replace_lifetime: bool = False
    ) -> GrantResult:
        """Safe grant: look the user up first, then add, change the expiry, or keep lifetime access."""
        _require_pine_id(pine_id)
        username = _require_username(username)
        if expiration is not None:
            format_expiration(expiration)  # reject a naive datetime before anything is sent
        current = self.find_user(pine_id, username)
        if current is None:
            if self.add_access(pine_id, username, expiration) == "ok":
                return GrantResult(GrantAction.ADDED, pine_id, username, expiration, None)
            # "exists" leaves the expiry untouched: the user was granted after our lookup, so look again.
            current = self.find_user(pine_id, username)
            if current is None:
                raise AlreadyHasAccess(
                    f"TradingView says {username} already has access to {pine_id} but does not list them, so "
                    "the expiry could not be set. Run "
                    f"`python manage.py tv_sync --script {pine_id}` and retry.",
                    summary=f"{username} already has access to {pine_id} but is not listed",
                )
        return self._grant_to_listed_user(pine_id, current, expiration, replace_lifetime=replace_lifetime)

    # --------------------------------------------------------------------------------------- scripts

    @_operation
    def list_scripts(self) -> list[str]:
        """Return the ids of the account's scripts whose access it manages."""
        answer = self._call("GET", LIST_SCRIPTS_PATH, subject="list the account's scripts")
        if not isinstance(answer, list) or not all(isinstance(item, str) for item in answer):
            raise self._shape_error(
                "GET", LIST_SCRIPTS_PATH, "the answer is not a list of script ids", answer
            )
        return answer

    @_operation
    def script_names(self, ids: Iterable[str]) -> dict[str, str]:
        """Return {script id: script name} for the ids TradingView knows."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        form = {"scriptIdPart": ",".join(wanted), "show_hidden": "true"}
        answer = self._call("POST", SCRIPT_NAMES_PATH, data=form, subject="read script names")
        if not isinstance(answer, list):
            raise self._shape_error("POST", SCRIPT_NAMES_PATH, "the answer is not a list of scripts", answer)
        names: dict[str, str] = {}
        for item in answer:
            if not (
                isinstance(item, dict)
                and isinstance(item.get("scriptIdPart"), str)
                and isinstance(item.get("scriptName"), str)
            ):
                raise self._shape_error(
                    "POST", SCRIPT_NAMES_PATH, "a script has no scriptIdPart or scriptName", answer
                )
            names[item["scriptIdPart"]] = item["scriptName"]
        return names

    # ------------------------------------------------------------------------------------- internals

    def _grant_to_listed_user(
        self, pine_id: str, current: ScriptUser, expiration: datetime | None, *, replace_lifetime: bool
    ) -> GrantResult:
        username = current.username
        if current.expiration is not None:
            self.modify_expiration(pine_id, username, expiration)
            return GrantResult(GrantAction.MODIFIED, pine_id, username, expiration, current)
        if expiration is None or not replace_lifetime:
            return GrantResult(GrantAction.UNCHANGED, pine_id, username, None, current)
        # TradingView cannot turn lifetime access into dated access in place; it takes a remove then an add.
        self.remove_access(pine_id, username)
        try:
            status = self.add_access(pine_id, username, expiration)
        except TradingViewError as exc:
            logger.error(
                "Removed lifetime access of %s on %s but adding it back %s failed; retry the grant",
                username,
                pine_id,
                describe_expiration(expiration),
            )
            exc.add_note(f"{username} has no access to {pine_id} until the grant is retried.")
            raise
        if status != "ok":
            raise UnexpectedAnswer(
                f"TradingView still lists {username} on {pine_id} right after removing them, so the new "
                "expiry was not set. Run a sync for the script and retry the grant.",
                summary=f"{username} still listed on {pine_id} after removal",
            )
        return GrantResult(GrantAction.REPLACED, pine_id, username, expiration, current)

    def _access_form(self, pine_id: str, username: str, expiration: datetime | None) -> dict[str, str]:
        _require_pine_id(pine_id)
        form = {"pine_id": pine_id, "username_recip": _require_username(username)}
        if expiration is not None:
            form["expiration"] = format_expiration(expiration)
        return form

    def _status(self, answer: Any, allowed: tuple[str, ...], method: str, path: str) -> str:
        status = answer.get("status") if isinstance(answer, dict) else None
        if status not in allowed:
            raise self._shape_error(method, path, f"status is not one of {', '.join(allowed)}", answer)
        return status

    def _current_cookies(self) -> dict[str, str] | None:
        if not self._cookies_loaded:
            self._cookies = _session_cookies(self._store.load())
            self._cookies_loaded = True
        return self._cookies

    def _forget_session(self, refused: dict[str, str]) -> None:
        self._cookies = None
        # Another process may have saved a newer session meanwhile; only clear the one that was refused.
        if _session_cookies(self._store.load()) == refused:
            self._store.clear()

    def _session_accepted(self, cookies: dict[str, str]) -> bool:
        response = self._send("GET", SESSION_CHECK_PATH, cookies=cookies)
        if _is_refusal(response):
            return False
        if 200 <= response.status_code < 300 and _json(response) is not _NO_JSON:
            return True
        raise self._unexpected(
            "GET", SESSION_CHECK_PATH, response, "the session check gave an unknown answer"
        )

    def _sign_in_for_call(self, subject: str) -> dict[str, str]:
        if self._signed_in_during_operation:
            raise self._session_refused_after_sign_in(subject)
        _signed_in_as, cookies = self._sign_in()
        return cookies

    def _sign_in(self) -> tuple[str, dict[str, str]]:
        if not self.username or not self._password:
            raise InvalidCredentials(
                "No TradingView username or password is configured. Set TRADINGVIEW_USERNAME and "
                f"TRADINGVIEW_PASSWORD, or {_PASTE_COOKIE_HINT}.",
                summary="no TradingView credentials configured",
            )
        form = {"username": self.username, "password": self._password, "remember": "on"}
        # A 429 is not retried here: repeated password sign-ins get the account captcha-blocked or locked out.
        response = self._send("POST", SIGN_IN_PATH, data=form, retry_rate_limit=False, log_answer=False)
        self._signed_in_during_operation = True
        answer = _json(response)
        if _is_html(response) or not isinstance(answer, dict):
            raise self._unexpected("POST", SIGN_IN_PATH, response, "the sign-in answer is not a JSON object")
        if isinstance(answer.get("user"), dict) and response.status_code < 300:
            cookies = _session_cookies(
                {name: response.cookies.get(name) or "" for name in SESSION_COOKIE_NAMES}
            )
            if cookies is None:
                raise self._unexpected(
                    "POST", SIGN_IN_PATH, response, "the sign-in answer set no sessionid cookie"
                )
            self._store.save(cookies)
            self._cookies, self._cookies_loaded = cookies, True
            signed_in_as = str(answer["user"].get("username") or self.username)
            logger.info("Signed in to TradingView as %s", signed_in_as)
            return signed_in_as, cookies
        raise self._sign_in_error(response, answer)

    def _call(
        self,
        method: str,
        path: str,
        *,
        subject: str,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> Any:
        """Make an authenticated call, reusing the saved session and signing in only when it is refused."""
        cookies = self._current_cookies()
        if cookies is None:
            cookies = self._sign_in_for_call(subject)
        response = self._send(method, path, params=params, data=data, cookies=cookies)
        if not _is_refusal(response):
            return self._answer(method, path, response, subject)
        if not _is_html(response) and self._session_accepted(cookies):
            # The session is fine, so the refusal is about this request (script id, username), not the login.
            raise self._error_answer(method, path, response, subject)
        stored = _session_cookies(self._store.load())
        if stored is not None and stored != cookies:
            # Another process signed in since these cookies were loaded: use its session rather than sign in.
            self._cookies = cookies = stored
            response = self._send(method, path, params=params, data=data, cookies=cookies)
            if not _is_refusal(response):
                return self._answer(method, path, response, subject)
            if not _is_html(response) and self._session_accepted(cookies):
                raise self._error_answer(method, path, response, subject)
        logger.info("TradingView refused the saved session on %s %s", method, path)
        self._forget_session(cookies)
        cookies = self._sign_in_for_call(subject)
        response = self._send(method, path, params=params, data=data, cookies=cookies)
        if not _is_refusal(response):
            return self._answer(method, path, response, subject)
        if not _is_html(response) and self._session_accepted(cookies):
            raise self._error_answer(method, path, response, subject)
        raise self._session_refused_after_sign_in(subject)

    def _public_call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None) -> Any:
        response = self._send(method, path, params=params)
        if _is_html(response):
            raise self._unexpected(method, path, response, "an HTML page came back where JSON was expected")
        return self._answer(method, path, response, subject=f"answer {method} {path}")

    def _answer(self, method: str, path: str, response: requests.Response, subject: str) -> Any:
        if 200 <= response.status_code < 300:
            answer = _json(response)
            if answer is _NO_JSON:
                raise self._unexpected(method, path, response, "the answer is not JSON")
            return answer
        raise self._error_answer(method, path, response, subject)

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, str] | None = None,
        cookies: Mapping[str, str] | None = None,
        retry_rate_limit: bool = True,
        log_answer: bool = True,
    ) -> requests.Response:
        """Send one request, retrying with backoff on 429, 5xx, connection errors and timeouts."""
        headers = {
            "Origin": self._origin,
            "Referer": f"{self.base_url}/",
            "X-Requested-With": "XMLHttpRequest",
        }
        body = None
        if data is not None:
            # urlencode sends ";" in a script id as %3B, as TradingView's own page does.
            body = urlencode(data)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if cookies:
            headers["Cookie"] = _cookie_header(cookies)
        shown = f"{path}?{urlencode(params)}" if params else path
        problem = ""
        for attempt in range(1, self._max_attempts + 1):
            retry_after = 0.0
            try:
                response = self._http.request(
                    method,
                    f"{self.base_url}{path}",
                    params=params,
                    data=body,
                    headers=headers,
                    timeout=self._timeout,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = _describe_failure(exc)
                logger.warning("TradingView %s %s failed (attempt %s): %s", method, shown, attempt, problem)
            else:
                logger.info(
                    "TradingView %s %s%s -> HTTP %s %s",
                    method,
                    shown,
                    _loggable_form(data),
                    response.status_code,
                    _short_answer(response) if log_answer else "(answer not logged)",
                )
                if response.status_code == 429:
                    if not retry_rate_limit:
                        raise self._rate_limited(method, path, attempts=1)
                    problem = "HTTP 429 (slow down)"
                    retry_after = self._retry_after(response)
                elif response.status_code >= 500:
                    said = _detail(response) or _short_answer(response, 80)
                    problem = f"HTTP {response.status_code} {said}".strip()
                else:
                    return response
            if attempt < self._max_attempts:
                self._sleep(max(self._backoff_seconds * 2 ** (attempt - 1), retry_after))
        if problem.startswith("HTTP 429"):
            raise self._rate_limited(method, path, attempts=self._max_attempts)
        raise TradingViewUnavailable(
            f"TradingView could not be reached after {self._max_attempts} "
            f"attempt{'' if self._max_attempts == 1 else 's'}: {problem} "
            f"({method} {path}). Check the server's network and TRADINGVIEW_URL ({self.base_url}); "
            "the operation can be retried later.",
            summary=f"TradingView unreachable: {problem}",
        )

    @staticmethod
    def _retry_after(response: requests.Response) -> float:
        value = response.headers.get("Retry-After", "").strip()
        try:
            return min(float(value), _MAX_RETRY_AFTER_SECONDS) if value else 0.0
        except ValueError:
            return 0.0

    # --------------------------------------------------------------------------------- error builders

    def _sign_in_error(self, response: requests.Response, answer: dict[str, Any]) -> TradingViewError:
        code = answer.get("code")
        error = str(answer.get("error") or "").strip()
        account = self.username
        logger.warning("TradingView refused the sign-in of %s: code=%s error=%s", account, code, error[:200])
        if code == "recaptcha_required":
            return CaptchaRequired(
                f"TradingView asked for a captcha when signing in as {account}. "
                f"To go on, {_PASTE_COOKIE_HINT}.",
                summary="sign-in needs a captcha",
            )
        if code == "2FA_required":
            raw_types = answer.get("two_factor_types")
            types = tuple(
                str(item["name"])
                for item in (raw_types if isinstance(raw_types, list) else [])
                if isinstance(item, dict) and item.get("name")
            )
            shown = ", ".join(types) or "unknown type"
            return TwoFactorRequired(
                f"TradingView asked for a two-factor code ({shown}) when signing in as {account}. "
                f"To go on, {_PASTE_COOKIE_HINT}.",
                summary=f"sign-in needs a two-factor code ({shown})",
                types=types,
            )
        if code == "rate_limit":
            return RateLimited(
                f"TradingView is limiting sign-ins for {account}: {error or 'rate_limit'}. "
                f"Wait at least an hour before signing in again; meanwhile {_PASTE_COOKIE_HINT}.",
                summary="sign-in rate-limited",
                detail=error or None,
            )
        if not code and "invalid username or password" in error.casefold():
            return InvalidCredentials(
                f'TradingView rejected the username or password of {account}: "{error}". Check '
                f"TRADINGVIEW_USERNAME and TRADINGVIEW_PASSWORD, or {_PASTE_COOKIE_HINT}.",
                summary="wrong TradingView username or password",
                detail=error,
            )
        return self._unexpected(
            "POST",
            SIGN_IN_PATH,
            response,
            f"sign-in failed with code={code!r} error={error!r}",
            detail=error or None,
        )

    def _session_refused_after_sign_in(self, subject: str) -> SessionExpired:
        return SessionExpired(
            f"TradingView refused the session even right after signing in as {self.username} "
            f"(trying to {subject}). Check that the account can still use TradingView in a browser, "
            f"then {_PASTE_COOKIE_HINT}.",
            summary="session refused right after signing in",
        )

    def _rate_limited(self, method: str, path: str, *, attempts: int) -> RateLimited:
        times = "once" if attempts == 1 else f"{attempts} times in a row"
        return RateLimited(
            f"TradingView asked us to slow down (HTTP 429) {times} on {method} {path}. "
            "Wait a few minutes and try again.",
            summary="rate-limited by TradingView (HTTP 429)",
            status=429,
        )

    def _error_answer(
        self, method: str, path: str, response: requests.Response, subject: str
    ) -> TradingViewError:
        detail = _detail(response)
        if detail == WRONG_CREDENTIALS_OR_PINE_ID:
            return ScriptNotAccessible(
                f'TradingView refused to {subject}: "{detail}" (HTTP {response.status_code}). Check that the '
                "script id is right, that the script is invite-only and published by the TradingView "
                f"account {self.username}, and that the username exists on TradingView.",
                summary=f"refused: {detail}",
                detail=detail,
                status=response.status_code,
            )
        return self._unexpected(method, path, response, f"could not {subject}", detail=detail)

    def _unexpected(
        self, method: str, path: str, response: requests.Response, problem: str, *, detail: str | None = None
    ) -> UnexpectedAnswer:
        detail = detail if detail is not None else _detail(response)
        said = f'"{detail}"' if detail else _short_answer(response, 160)
        return UnexpectedAnswer(
            f"TradingView gave an unexpected answer to {method} {path}: {problem}; "
            f"HTTP {response.status_code} {said}. Nothing was assumed to have worked. Retry later; "
            "if it keeps happening, TradingView may have changed this endpoint and the client needs "
            "updating.",
            summary=f"unexpected answer: HTTP {response.status_code} {detail or problem}",
            detail=detail,
            status=response.status_code,
        )

    def _shape_error(self, method: str, path: str, problem: str, answer: Any = None) -> UnexpectedAnswer:
        shown = " ".join(repr(answer).split())[:160]
        return UnexpectedAnswer(
            f"TradingView gave an unexpected answer to {method} {path}: {problem} ({shown}). "
            "Nothing was assumed to have worked. If it keeps happening, TradingView may have changed "
            "this endpoint.",
            summary=f"unexpected answer: {problem}",
        )


def client_from_settings(session_store: TradingViewSessionStore, **options: Any) -> TradingViewClient:
    """Build a client from TRADINGVIEW_URL, TRADINGVIEW_USERNAME and TRADINGVIEW_PASSWORD in the settings."""
    from django.conf import settings

    return TradingViewClient(
        settings.TRADINGVIEW_URL,
        settings.TRADINGVIEW_USERNAME or "",
        settings.TRADINGVIEW_PASSWORD or "",
        session_store,
        **options,
    )
