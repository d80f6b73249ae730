"""A fake TradingView on 127.0.0.1 that answers as shared/specs/tradingview.md describes, for tests."""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import secrets
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from pineaccess.tradingview import MemorySessionStore, TradingViewClient, TradingViewSessionStore

SELLER_USERNAME = "SellerAccount"
SELLER_PASSWORD = "correct horse battery staple"
WRONG_CREDENTIALS_OR_PINE_ID = {"detail": "Wrong credentials or pineId"}
NOT_AUTHENTICATED = {"detail": "Authentication credentials were not provided."}
LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>TradingView</title></head><body>Sign in</body></html>"
MAX_PAGE_SIZE = 20
ORDERINGS = (
    "user__username",
    "-user__username",
    "created",
    "-created",
    "expiration,user__username",
    "-expiration,user__username",
)
# The client must send exactly this form: ISO 8601 in UTC with milliseconds and a Z.
EXPIRATION_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

Reply = tuple[int, list[tuple[str, str]], bytes]


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received, as it arrived."""

    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]
    body: str

    @property
    def cookies(self) -> dict[str, str]:
        """The cookies in the Cookie header, by name."""
        pairs = (part.strip().partition("=") for part in self.headers.get("cookie", "").split(";"))
        return {name: value for name, _eq, value in pairs if name}


@dataclass
class FakeAccess:
    """One user's access to one script."""

    user_id: int
    username: str
    expiration: datetime | None
    created: datetime


@dataclass
class FakeScript:
    """An invite-only script of the seller's account."""

    pine_id: str
    name: str
    access: dict[str, FakeAccess] = field(default_factory=dict)


class _Refusal(Exception):
    """An error answer raised from deep inside an endpoint."""

    def __init__(self, reply: Reply):
        super().__init__(reply[0])
        self.reply = reply


@dataclass
class _Fault:
    status: int | None  # None: drop the connection, or with a delay answer normally but late
    body: bytes = b""
    content_type: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class FakeTradingView:
    """TradingView's sign-in, session check, username hint and "Manage access" endpoints, with state."""

    def __init__(self, *, account_username: str = SELLER_USERNAME, account_password: str = SELLER_PASSWORD):
        self.account_username = account_username
        self.account_password = account_password
        self.require_captcha = False
        self.two_factor_types: list[str] | None = None
        self.sign_in_rate_limited = False
        self.refuse_all_sessions = False
        self.expired_answer = "403"  # "401", "403" or "html": how a refused session is answered
        self.wrong_pine_id_status = 400
        self.next_link_prefix = ""  # e.g. "https://www.tradingview.com" to answer absolute next links
        self.requests: list[RecordedRequest] = []
        self.errors: list[str] = []
        self.sessions: dict[str, str] = {}
        self.users: dict[str, tuple[int, str]] = {}
        self.scripts: dict[str, FakeScript] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._ids = itertools.count(44513150)
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.add_user(account_username)

    # ------------------------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """The address to give the client, http://127.0.0.1:<port>."""
        if self._server is None:
            raise RuntimeError("The fake TradingView is not running.")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeTradingView:
        """Listen on a free port of 127.0.0.1 in a background thread."""
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        # A short poll interval keeps shutdown (and so each test) fast.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, name="fake-tradingview", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and wait for the server thread."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def client(self, store: TradingViewSessionStore | None = None, **options: Any) -> TradingViewClient:
        """A real client pointed at this fake with the seller's credentials (no real sleeping by default)."""
        options.setdefault("sleep", lambda _seconds: None)
        return TradingViewClient(
            self.base_url,
            self.account_username,
            self.account_password,
            store if store is not None else MemorySessionStore(),
            **options,
        )

    # ---------------------------------------------------------------------------------------- state

    def add_user(self, username: str) -> int:
        """Create a TradingView user and return its id."""
        with self._lock:
            existing = self.users.get(username.casefold())
            if existing:
                return existing[0]
            user_id = next(self._ids)
            self.users[username.casefold()] = (user_id, username)
            return user_id

    def add_script(self, pine_id: str | None = None, name: str = "Invite-only strategy") -> str:
        """Publish an invite-only script on the seller's account and return its id."""
        pine_id = pine_id or f"PUB;{secrets.token_hex(16)}"
        with self._lock:
            self.scripts[pine_id] = FakeScript(pine_id, name)
        return pine_id

    def set_access(
        self, pine_id: str, username: str, expiration: datetime | None, *, created: datetime | None = None
    ) -> None:
        """Give a user access directly (creating the user if needed), as if done on TradingView's site."""
        user_id = self.add_user(username)
        with self._lock:
            spelled = self.users[username.casefold()][1]
            self.scripts[pine_id].access[username.casefold()] = FakeAccess(
                user_id, spelled, _stored_expiration(expiration), created or datetime.now(UTC)
            )

    def access(self, pine_id: str) -> dict[str, datetime | None]:
        """Who has access to the script: {TradingView spelling: expiration or None for lifetime}."""
        with self._lock:
            return {row.username: row.expiration for row in self.scripts[pine_id].access.values()}

    def issue_session(self) -> dict[str, str]:
        """Create a session as a browser sign-in would and return its cookies."""
        with self._lock:
            sessionid, sign = secrets.token_hex(16), f"v3:{secrets.token_urlsafe(24)}"
            self.sessions[sessionid] = sign
            return {"sessionid": sessionid, "sessionid_sign": sign}

    def expire_sessions(self) -> None:
        """Forget every session, as TradingView does when a session times out."""
        with self._lock:
            self.sessions.clear()

    # --------------------------------------------------------------------------------------- faults

    def fail_next(
        self,
        path: str,
        status: int,
        times: int = 1,
        *,
        body: Any = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next `times` requests to `path` ("*" for any) with this status and body."""
        if body is None:
            body = {"detail": f"Injected HTTP {status}"}
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        with self._lock:
            queue = self._faults.setdefault(path, deque())
            queue.extend(_Fault(status, raw, content_type, headers or {}) for _ in range(times))

    def disconnect_next(self, path: str, times: int = 1) -> None:
        """Drop the connection without answering the next `times` requests to `path`."""
        with self._lock:
            queue = self._faults.setdefault(path, deque())
            queue.extend(_Fault(None) for _ in range(times))

    def slow_next(self, path: str, seconds: float, times: int = 1) -> None:
        """Wait `seconds` before answering the next `times` requests to `path` (to trip read timeouts)."""
        with self._lock:
            queue = self._faults.setdefault(path, deque())
            queue.extend(_Fault(None, delay=seconds) for _ in range(times))

    # ------------------------------------------------------------------------------------ recording

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        """The recorded requests to a path (and method)."""
        with self._lock:
            return [r for r in self.requests if r.path == path and (method is None or r.method == method)]

    @property
    def sign_in_count(self) -> int:
        """How many sign-in requests arrived."""
        return len(self.requests_to("/accounts/signin/", "POST"))

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self.requests.clear()

    # ------------------------------------------------------------------------------------- handling

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply | None:
        """Answer one request; None means drop the connection."""
        parts = urlsplit(target)
        text = body.decode("utf-8", errors="replace")
        content_type = headers.get("content-type", "")
        form = (
            dict(parse_qsl(text, keep_blank_values=True)) if "x-www-form-urlencoded" in content_type else {}
        )
        recorded = RecordedRequest(
            method, parts.path, dict(parse_qsl(parts.query, keep_blank_values=True)), form, headers, text
        )
        with self._lock:
            self.requests.append(recorded)
            fault = self._pop_fault(parts.path)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        elif fault is not None:
            if fault.status is None:
                return None
            return fault.status, [("Content-Type", fault.content_type), *fault.headers.items()], fault.body
        try:
            with self._lock:
                return self._route(recorded)
        except Exception:  # report the fake's own bugs to the test instead of hiding them
            self.errors.append(traceback.format_exc())
            return _json_reply(500, {"detail": "fake TradingView crashed"})

    def _pop_fault(self, path: str) -> _Fault | None:
        for key in (path, "*"):
            queue = self._faults.get(key)
            if queue:
                return queue.popleft()
        return None

    def _route(self, request: RecordedRequest) -> Reply:
        routes = {
            ("POST", "/accounts/signin/"): self._sign_in,
            ("GET", "/tvcoins/details/"): self._coins,
            ("GET", "/username_hint/"): self._username_hint,
            ("POST", "/pine_perm/list_users/"): self._list_users,
            ("POST", "/pine_perm/add/"): self._add,
            ("POST", "/pine_perm/modify_user_expiration/"): self._modify,
            ("POST", "/pine_perm/remove/"): self._remove,
            ("GET", "/pine_perm/list_scripts/"): self._list_scripts,
            ("POST", "/pubscripts-get/"): self._script_names,
        }
        handler = routes.get((request.method, request.path))
        if handler is None:
            if any(path == request.path for _method, path in routes):
                return _json_reply(405, {"detail": f'Method "{request.method}" not allowed.'})
            return (
                404,
                [("Content-Type", "text/html; charset=utf-8")],
                b"<html><body>Page not found</body></html>",
            )
        if request.method == "POST" and "x-www-form-urlencoded" not in request.headers.get(
            "content-type", ""
        ):
            return _json_reply(415, {"detail": "Unsupported media type in request."})
        if handler not in (self._sign_in, self._username_hint) and not self._signed_in(request):
            if self.expired_answer == "html":
                return 200, [("Content-Type", "text/html; charset=utf-8")], LOGIN_PAGE
            return _json_reply(int(self.expired_answer), NOT_AUTHENTICATED)
        try:
            return handler(request)
        except _Refusal as refusal:
            return refusal.reply

    def _signed_in(self, request: RecordedRequest) -> bool:
        cookies = request.cookies
        sign = self.sessions.get(cookies.get("sessionid", ""))
        if sign is None or self.refuse_all_sessions:
            return False
        return "sessionid_sign" not in cookies or cookies["sessionid_sign"] == sign

    # ------------------------------------------------------------------------------------ endpoints

    def _sign_in(self, request: RecordedRequest) -> Reply:
        form = request.form
        if self.sign_in_rate_limited:
            return _json_reply(200, {"error": "Too many sign-in attempts, try later.", "code": "rate_limit"})
        if self.require_captcha:
            return _json_reply(
                200, {"error": "Please confirm that you are not a robot.", "code": "recaptcha_required"}
            )
        if form.get("username") != self.account_username or form.get("password") != self.account_password:
            return _json_reply(200, {"error": "Invalid username or password"})
        if self.two_factor_types:
            answer = {
                "error": "2FA is required",
                "code": "2FA_required",
                "two_factor_types": [{"name": name} for name in self.two_factor_types],
            }
            return _json_reply(200, answer)
        cookies = self.issue_session()
        user = {
            "id": self.users[self.account_username.casefold()][0],
            "username": self.account_username,
            "is_pro": True,
            "auth_token": f"private-auth-token-{secrets.token_hex(8)}",
        }
        status, headers, payload = _json_reply(200, {"user": user})
        headers += [
            ("Set-Cookie", f"sessionid={cookies['sessionid']}; Path=/; HttpOnly; SameSite=Lax"),
            ("Set-Cookie", f"sessionid_sign={cookies['sessionid_sign']}; Path=/; HttpOnly; SameSite=Lax"),
            ("Set-Cookie", f"csrftoken={secrets.token_hex(8)}; Path=/; SameSite=Lax"),
        ]
        return status, headers, payload

    def _coins(self, request: RecordedRequest) -> Reply:
        return _json_reply(200, {"balance": 0, "currency": "coins"})

    def _username_hint(self, request: RecordedRequest) -> Reply:
        text = request.query.get("s", "").casefold()
        matches = sorted(
            (spelled for key, (_id, spelled) in self.users.items() if text and key.startswith(text)),
            key=str.casefold,
        )
        return _json_reply(
            200, [{"username": name, "userpic": "", "is_broker": False} for name in matches[:10]]
        )

    def _list_users(self, request: RecordedRequest) -> Reply:
        script = self.scripts.get(request.form.get("pine_id", ""))
        if script is None:
            return _json_reply(self.wrong_pine_id_status, WRONG_CREDENTIALS_OR_PINE_ID)
        try:
            limit = int(request.query.get("limit", MAX_PAGE_SIZE))
        except ValueError:
            return _json_reply(400, {"detail": "bad_pagination_request"})
        if not 0 < limit <= MAX_PAGE_SIZE:
            return _json_reply(400, {"detail": "bad_pagination_request"})
        order_by = request.query.get("order_by", "user__username")
        if order_by not in ORDERINGS:
            return _json_reply(400, {"detail": "bad_ordering"})
        offset = _decode_cursor(request.query.get("c"))
        if offset is None:
            return _json_reply(400, {"detail": "Invalid cursor"})
        wanted = request.form.get("username", "").casefold()
        rows = sorted((row for key, row in script.access.items() if wanted in key), key=_sort_key(order_by))
        page = rows[offset : offset + limit]
        next_link = None
        if offset + limit < len(rows):
            query = urlencode({"c": _encode_cursor(offset + limit), "limit": limit, "order_by": order_by})
            next_link = f"{self.next_link_prefix}/pine_perm/list_users/?{query}"
        results = [
            {
                "id": row.user_id,
                "username": row.username,
                "userpic": "",
                "expiration": row.expiration.isoformat() if row.expiration else None,
                "created": row.created.isoformat(),
            }
            for row in page
        ]
        return _json_reply(200, {"results": results, "next": next_link})

    def _access_target(self, request: RecordedRequest) -> tuple[FakeScript, str]:
        script = self.scripts.get(request.form.get("pine_id", ""))
        key = request.form.get("username_recip", "").casefold()
        if script is None or key not in self.users:
            raise _Refusal(_json_reply(self.wrong_pine_id_status, WRONG_CREDENTIALS_OR_PINE_ID))
        return script, key

    def _form_expiration(self, request: RecordedRequest) -> datetime | None:
        value = request.form.get("expiration")
        if value is None:
            return None
        if not EXPIRATION_RE.match(value):
            raise _Refusal(_json_reply(400, {"detail": f"Invalid expiration: {value}"}))
        return _stored_expiration(datetime.fromisoformat(value))

    def _add(self, request: RecordedRequest) -> Reply:
        script, key = self._access_target(request)
        expiration = self._form_expiration(request)
        if key in script.access:
            return _json_reply(200, {"status": "exists"})
        user_id, spelled = self.users[key]
        script.access[key] = FakeAccess(user_id, spelled, expiration, datetime.now(UTC))
        return _json_reply(201, {"status": "ok"})

    def _modify(self, request: RecordedRequest) -> Reply:
        script, key = self._access_target(request)
        expiration = self._form_expiration(request)
        if key not in script.access:
            raise _Refusal(_json_reply(self.wrong_pine_id_status, WRONG_CREDENTIALS_OR_PINE_ID))
        script.access[key].expiration = expiration
        return _json_reply(200, {"status": "ok"})

    def _remove(self, request: RecordedRequest) -> Reply:
        script, key = self._access_target(request)
        if script.access.pop(key, None) is None:
            return _json_reply(200, {"status": "not_exists"})
        return _json_reply(200, {"status": "ok"})

    def _list_scripts(self, request: RecordedRequest) -> Reply:
        return _json_reply(200, list(self.scripts))

    def _script_names(self, request: RecordedRequest) -> Reply:
        ids = [part for part in request.form.get("scriptIdPart", "").split(",") if part]
        found = [self.scripts[pine_id] for pine_id in ids if pine_id in self.scripts]
        return _json_reply(200, [{"scriptIdPart": s.pine_id, "scriptName": s.name} for s in found])


def _json_reply(status: int, answer: Any) -> Reply:
    return status, [("Content-Type", "application/json")], json.dumps(answer).encode()


def _stored_expiration(expiration: datetime | None) -> datetime | None:
    # TradingView stores the second it was given and answers it with .999000, e.g. 23:59:59.999000+00:00.
    if expiration is None:
        return None
    return expiration.astimezone(UTC).replace(microsecond=999000)


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o={offset}".encode()).decode()


def _decode_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not text.startswith("o=") or not text[2:].isdigit():
        return None
    return int(text[2:])


def _sort_key(order_by: str) -> Any:
    far_future = datetime.max.replace(tzinfo=UTC)
    keys = {
        "user__username": lambda row: row.username.casefold(),
        "created": lambda row: (row.created, row.username.casefold()),
        "expiration,user__username": lambda row: (row.expiration or far_future, row.username.casefold()),
    }
    return keys[order_by.removeprefix("-")]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeTradingView

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that hang up (tests drop and time out connections on purpose)."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeTradingView/1.0"
    timeout = 10
    # Buffered writes send headers and body in one segment; two small writes meet delayed ACKs (40 ms each).
    wbufsize = -1
    server: _Server

    def do_GET(self) -> None:
        """Answer a GET."""
        self._answer()

    def do_POST(self) -> None:
        """Answer a POST."""
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = self.server.fake.handle(self.command, self.path, headers, body)
        if reply is None:
            self.close_connection = True
            return
        status, reply_headers, payload = reply
        self.send_response(status)
        for name, value in reply_headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, fmt: str, *args: Any) -> None:
        """Keep test output clean."""


@contextmanager
def running_fake_tradingview(**options: Any) -> Iterator[FakeTradingView]:
    """Run a fake TradingView for the duration of a with-block; fails the test if the fake itself crashed."""
    fake = FakeTradingView(**options).start()
    try:
        yield fake
    finally:
        fake.stop()
    if fake.errors:
        raise AssertionError("The fake TradingView crashed:\n" + "\n".join(fake.errors))
