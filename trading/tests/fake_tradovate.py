"""A fake Tradovate REST server on 127.0.0.1 with state, a request log and injectable faults, for tests."""

from __future__ import annotations

import itertools
import json
import random
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEMO_ACCOUNT_ID = 12345
DEMO_ACCOUNT_NAME = "DEMO12345"
OTHER_ACCOUNT_ID = 67890
OTHER_ACCOUNT_NAME = "DEMO67890"
USERNAME = "trader"
PASSWORD = "correct-horse-battery"
APP_ID = "JustTrades"
APP_VERSION = "1.0"
CID = 8
SEC = "app-secret-f00d"
OAUTH_CLIENT_ID = "8"
OAUTH_CLIENT_SECRET = "oauth-secret-beef"
BAD_LOGIN_TEXT = (
    "Incorrect username or password. Please try again. Note: 5 failed attempts will lock the account."
)

# id, name, product, tick size, point value, first price. Listed front month first per product.
CONTRACTS: tuple[tuple[int, str, str, Decimal, Decimal, Decimal], ...] = (
    (4001, "ESZ6", "ES", Decimal("0.25"), Decimal(50), Decimal("5000.00")),
    (4002, "ESH7", "ES", Decimal("0.25"), Decimal(50), Decimal("5010.00")),
    (4101, "MESZ6", "MES", Decimal("0.25"), Decimal(5), Decimal("5000.00")),
    (4201, "NQZ6", "NQ", Decimal("0.25"), Decimal(20), Decimal("18000.00")),
    (4301, "CLF7", "CL", Decimal("0.01"), Decimal(1000), Decimal("70.00")),
)
OPEN_STATUSES = frozenset({"Working", "Suspended", "PendingNew"})


@dataclass
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]
    at: float = 0.0  # wall-clock arrival (time.time()), for benchmarks that time alert-to-broker


@dataclass
class _Fault:
    path: str | None
    kind: str
    status: int = 500
    seconds: float | None = None
    process: bool = True
    p_time: float = 0.0
    captcha: bool = False
    reason: str = ""
    text: str = ""
    cookie: str = ""
    skip: int = 0  # let this many matching calls through first


@dataclass
class _Reply:
    status: int
    payload: Any
    extra: dict[str, Any] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in one segment: split writes meet delayed ACKs and cost 40 ms a request.
    wbufsize = -1
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self.server.fake._handle(self)

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeTradovate


def _number(value: Decimal | None) -> float | int | None:
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


class FakeTradovate:
    """Tradovate's REST API in memory: accounts, contracts, orders with versions, positions, fills, tokens."""

    def __init__(
        self, *, token_lifetime: timedelta = timedelta(minutes=80), answer_delay: float = 0.0
    ) -> None:
        self.lock = threading.RLock()
        self.token_lifetime = token_lifetime
        # Seconds every answer is held back after the call is carried out, as a real broker's round trip
        # (the benchmark's 20 ms); answers to different connections wait in parallel.
        self.answer_delay = answer_delay
        self.requests: list[RecordedRequest] = []
        self.users = {USERNAME: PASSWORD}
        self.accounts: list[dict[str, Any]] = [
            {
                "id": DEMO_ACCOUNT_ID,
                "name": DEMO_ACCOUNT_NAME,
                "userId": 1,
                "accountType": "Customer",
                "active": True,
            },
            {
                "id": OTHER_ACCOUNT_ID,
                "name": OTHER_ACCOUNT_NAME,
                "userId": 1,
                "accountType": "Customer",
                "active": True,
            },
        ]
        self.contracts: dict[int, dict[str, Any]] = {}
        self.prices: dict[int, Decimal] = {}
        for contract_id, name, product, tick, point_value, price in CONTRACTS:
            self.contracts[contract_id] = {
                "id": contract_id,
                "name": name,
                "contractMaturityId": contract_id + 50_000,
                "product": product,
                "tickSize": tick,
                "valuePerPoint": point_value,
            }
            self.prices[contract_id] = price
        self.tokens: dict[str, datetime] = {}
        self.oauth_codes: set[str] = set()
        self.tickets: set[str] = set()
        # Ids start at a random point so that caches keyed by id never confuse two fakes on a reused port.
        self._ids = itertools.count(random.randrange(10_000_000, 90_000_000, 1000))
        self.orders: dict[int, dict[str, Any]] = {}
        self.versions: dict[int, list[dict[str, Any]]] = {}
        self.positions: dict[tuple[int, int], dict[str, Any]] = {}
        self.fills: list[dict[str, Any]] = []
        self.realized: dict[int, Decimal] = {}
        self._faults: list[_Fault] = []
        # A base URL of its own: what the adapter keeps per URL in a process (failed logins, a captcha pause,
        # contracts) never passes from one test's fake to the next one's on a reused port.
        self._instance = f"/fake-{uuid.uuid4().hex[:12]}"
        # The spec makes a bracket's clOrdId optional: False plays a Tradovate that does not keep it.
        self.keeps_bracket_client_ids = True
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Serve on 127.0.0.1 on a free port in a background thread."""
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-tradovate",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and wake any answer held back by a slow fault."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        """The REST base, ending in /v1 like Tradovate's."""
        assert self._server is not None, "the fake is not running"
        return f"http://127.0.0.1:{self._server.server_address[1]}{self._instance}/v1"

    # --- faults ---------------------------------------------------------------------------------------------

    def fail_next(self, path: str | None = None, *, status: int = 500) -> None:
        """Answer the next call (to path, or any) with this HTTP status and do nothing."""
        self._add_fault(_Fault(path, "status", status=status))

    def slow_next(self, path: str | None = None, *, seconds: float | None = None) -> None:
        """Carry out the next call, then hold its answer back `seconds` (by default until the fake stops)."""
        self._add_fault(_Fault(path, "slow", seconds=seconds))

    def drop_next(self, path: str | None = None, *, process: bool = True, skip: int = 0) -> None:
        """Read the next call (carrying it out unless process=False), then close the connection unanswered.

        `skip` lets that many matching calls through first (drop the third placeorder: skip=2).
        """
        self._add_fault(_Fault(path, "drop", process=process, skip=skip))

    def penalize_next(self, path: str | None = None, *, p_time: float = 1, captcha: bool = False) -> None:
        """Answer the next call with a penalty ticket (and a captcha demand when asked), doing nothing."""
        self._add_fault(_Fault(path, "penalty", p_time=p_time, captcha=captcha))

    def refuse_next(self, path: str | None = None, *, reason: str, text: str) -> None:
        """Refuse the next call with Tradovate's failure pair, doing nothing."""
        self._add_fault(_Fault(path, "refuse", reason=reason, text=text))

    def set_cookie_next(self, path: str | None = None, *, cookie: str) -> None:
        """Carry out the next call and answer it with a `Set-Cookie: <cookie>` header."""
        self._add_fault(_Fault(path, "cookie", cookie=cookie))

    def expire_tokens(self) -> None:
        """Make every token issued so far expired: the next authenticated call gets 401."""
        with self.lock:
            past = datetime.now(UTC) - timedelta(seconds=1)
            for token in self.tokens:
                self.tokens[token] = past

    def _add_fault(self, fault: _Fault) -> None:
        with self.lock:
            self._faults.append(fault)

    def _take_fault(self, path: str) -> _Fault | None:
        with self.lock:
            for index, fault in enumerate(self._faults):
                if fault.path is None or fault.path == path:
                    if fault.skip:
                        fault.skip -= 1
                        return None
                    return self._faults.pop(index)
        return None

    # --- helpers for tests ----------------------------------------------------------------------------------

    def issue_token(self, lifetime: timedelta | None = None) -> tuple[str, datetime]:
        """A valid token, as if issued by an earlier login (to seed a token store)."""
        with self.lock:
            token = "tok-" + secrets.token_hex(16)
            expires_at = datetime.now(UTC) + (lifetime or self.token_lifetime)
            self.tokens[token] = expires_at
            return token, expires_at

    def issue_oauth_code(self) -> str:
        """An authorization code as Tradovate's authorize page would hand to the callback."""
        with self.lock:
            code = "code-" + secrets.token_hex(8)
            self.oauth_codes.add(code)
            return code

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """Requests received for one path (relative to /v1)."""
        with self.lock:
            return [request for request in self.requests if request.path == path]

    def bodies(self, path: str) -> list[Any]:
        """The JSON bodies sent to one path, in order."""
        return [request.body for request in self.requests_to(path)]

    def orders_with_client_id(self, client_id: str) -> list[dict[str, Any]]:
        """Every order whose versions carry this clOrdId."""
        with self.lock:
            return [
                self.orders[order_id]
                for order_id, versions in self.versions.items()
                if any(version.get("clOrdId") == client_id for version in versions)
            ]

    def order(self, order_id: int | str) -> dict[str, Any]:
        """An order row with its latest version merged in."""
        with self.lock:
            order_id = int(order_id)
            return {**self.versions[order_id][-1], **self.orders[order_id]}

    def contract_id(self, name: str) -> int:
        """The id of a contract by name."""
        return next(contract_id for contract_id, row in self.contracts.items() if row["name"] == name)

    def set_price(self, name: str, price: Decimal) -> None:
        """Move the market of one contract; working orders it crosses fill."""
        with self.lock:
            self.prices[self.contract_id(name)] = price
            self._match()

    def fill_order(self, order_id: int | str, price: Decimal | None = None) -> None:
        """Fill an open order now, at `price` or the market."""
        with self.lock:
            order = self.orders[int(order_id)]
            self._fill(order, price if price is not None else self.prices[order["contractId"]])
            self._match()

    def position(self, account_id: int, name: str) -> int:
        """The signed net position of an account in a contract."""
        with self.lock:
            row = self.positions.get((account_id, self.contract_id(name)))
            return row["netPos"] if row else 0

    # --- HTTP -----------------------------------------------------------------------------------------------

    def _handle(self, handler: _Handler) -> None:
        split = urlsplit(handler.path)
        query = {key: values[-1] for key, values in parse_qs(split.query).items()}
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw, parse_float=Decimal) if raw else None
        except ValueError:
            self._send(handler, _Reply(400, {"errorText": "Malformed JSON"}))
            return
        arrived = time.time()
        path = split.path.removeprefix(self._instance)
        path = path.removeprefix("/v1") if path.startswith("/v1/") else path
        with self.lock:
            self.requests.append(
                RecordedRequest(
                    handler.command, path, query, _plain(body), dict(handler.headers.items()), arrived
                )
            )
        fault = self._take_fault(path)
        if fault is not None and fault.kind == "status":
            self._send(handler, _Reply(fault.status, {"errorText": f"Fake failure {fault.status}"}))
            return
        if fault is not None and fault.kind == "penalty":
            ticket = "ticket-" + secrets.token_hex(6)
            with self.lock:
                self.tickets.add(ticket)
            payload: dict[str, Any] = {"p-ticket": ticket, "p-time": fault.p_time}
            if fault.captcha:
                payload["p-captcha"] = True
            self._send(handler, _Reply(200, payload))
            return
        if fault is not None and fault.kind == "refuse":
            self._send(handler, _Reply(200, {"failureReason": fault.reason, "failureText": fault.text}))
            return
        if fault is not None and fault.kind == "drop" and not fault.process:
            self._drop(handler)
            return
        if isinstance(body, dict) and "p-ticket" in body:
            with self.lock:
                known = body.pop("p-ticket") in self.tickets
            if not known:
                self._send(handler, _Reply(200, {"errorText": "Unknown p-ticket"}))
                return
        reply = self._route(handler.command, path, query, body, handler.headers.get("Authorization", ""))
        if fault is not None and fault.kind == "drop":
            self._drop(handler)
            return
        if fault is not None and fault.kind == "slow":
            self._stopping.wait(fault.seconds)
        if fault is not None and fault.kind == "cookie":
            reply.extra["Set-Cookie"] = fault.cookie
        if self.answer_delay:
            self._stopping.wait(self.answer_delay)
        self._send(handler, reply)

    @staticmethod
    def _drop(handler: _Handler) -> None:
        handler.close_connection = True

    @staticmethod
    def _send(handler: _Handler, reply: _Reply) -> None:
        data = json.dumps(reply.payload, default=_number).encode()
        try:
            handler.send_response(reply.status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for name, value in reply.extra.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
            handler.wfile.flush()
        except OSError:
            handler.close_connection = True  # the client gave up (timeout) before the answer

    def _route(self, method: str, path: str, query: dict[str, str], body: Any, authorization: str) -> _Reply:
        public = {
            ("POST", "/auth/accesstokenrequest"): self._access_token_request,
            ("POST", "/auth/oauthtoken"): self._oauth_token,
        }
        if (method, path) in public:
            return public[(method, path)](body or {})
        token = authorization.removeprefix("Bearer ").strip()
        with self.lock:
            expires_at = self.tokens.get(token)
            if expires_at is None or expires_at <= datetime.now(UTC):
                return _Reply(401, "Expired Access Token")
            routes = {
                ("GET", "/auth/renewaccesstoken"): self._renew,
                ("GET", "/auth/me"): lambda: _Reply(
                    200, {"userId": 1, "fullName": "Test Trader", "email": "t@x.test"}
                ),
                ("GET", "/account/list"): lambda: _Reply(200, self.accounts),
                ("GET", "/contract/find"): lambda: self._contract_find(query.get("name", "")),
                ("GET", "/contract/suggest"): lambda: self._contract_suggest(
                    query.get("t", ""), int(query.get("l", 5))
                ),
                ("GET", "/contract/item"): lambda: self._contract_item(int(query.get("id", 0))),
                ("GET", "/product/find"): lambda: self._product_find(query.get("name", "")),
                ("GET", "/position/list"): lambda: _Reply(
                    200, [_public(row) for row in self.positions.values()]
                ),
                ("GET", "/order/list"): lambda: _Reply(200, [_public(row) for row in self.orders.values()]),
                ("GET", "/orderVersion/deps"): lambda: _Reply(
                    200, [_public(row) for row in self.versions.get(int(query.get("masterid", 0)), [])]
                ),
                ("GET", "/fill/list"): lambda: _Reply(200, [_public(row) for row in self.fills]),
                ("POST", "/cashBalance/getcashbalancesnapshot"): lambda: self._cash_balance(body or {}),
                ("POST", "/order/placeorder"): lambda: self._place_order(body or {}),
                ("POST", "/order/placeoso"): lambda: self._place_oso(body or {}),
                ("POST", "/order/placeoco"): lambda: self._place_oco(body or {}),
                ("POST", "/order/modifyorder"): lambda: self._modify(body or {}),
                ("POST", "/order/cancelorder"): lambda: self._cancel(body or {}),
                ("POST", "/order/liquidateposition"): lambda: self._liquidate(body or {}),
            }
            route = routes.get((method, path))
            if route is None:
                return _Reply(404, {"errorText": f"Unknown path {path}"})
            return route()

    # --- auth -----------------------------------------------------------------------------------------------

    def _new_token(self) -> dict[str, Any]:
        token, expires_at = self.issue_token()
        return {
            "accessToken": token,
            "mdAccessToken": "md-" + token,
            "expirationTime": expires_at.isoformat().replace("+00:00", "Z"),
            "userId": 1,
            "userStatus": "Active",
            "name": USERNAME,
            "hasLive": False,
        }

    def _access_token_request(self, body: dict[str, Any]) -> _Reply:
        with self.lock:
            if body.get("cid") != CID or body.get("sec") != SEC or body.get("appId") != APP_ID:
                return _Reply(200, {"errorText": "The app is not registered."})
            if not body.get("deviceId"):
                return _Reply(200, {"errorText": "deviceId is required."})
            if self.users.get(body.get("name")) != body.get("password"):
                return _Reply(200, {"errorText": BAD_LOGIN_TEXT})
            return _Reply(200, self._new_token())

    def _renew(self) -> _Reply:
        # Renewal keeps the session: the old token stays valid until its own expiry.
        return _Reply(200, self._new_token())

    def _oauth_token(self, body: dict[str, Any]) -> _Reply:
        with self.lock:
            if body.get("grant_type") != "authorization_code":
                return _Reply(
                    400, {"error": "unsupported_grant_type", "error_description": "Unsupported grant."}
                )
            if body.get("client_id") != OAUTH_CLIENT_ID or body.get("client_secret") != OAUTH_CLIENT_SECRET:
                return _Reply(200, {"error": "invalid_client", "error_description": "Unknown client."})
            if body.get("code") not in self.oauth_codes or not body.get("redirect_uri"):
                return _Reply(
                    200, {"error": "invalid_grant", "error_description": "The code is invalid or expired."}
                )
            self.oauth_codes.discard(body["code"])
            token, _ = self.issue_token()
            return _Reply(200, {"access_token": token, "token_type": "bearer", "expires_in": 4800})

    # --- contracts and money --------------------------------------------------------------------------------

    def _contract_public(self, contract: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": contract["id"],
            "name": contract["name"],
            "contractMaturityId": contract["contractMaturityId"],
        }

    def _contract_find(self, name: str) -> _Reply:
        for contract in self.contracts.values():
            if contract["name"] == name:
                return _Reply(200, self._contract_public(contract))
        return _Reply(404, {"errorText": f"Contract {name} not found"})

    def _contract_suggest(self, text: str, limit: int) -> _Reply:
        # Like Tradovate's text search: anything containing the text, exact-root matches first.
        rows = [row for row in self.contracts.values() if text and text in row["name"]]
        rows.sort(key=lambda row: (row["product"] != text, row["id"]))
        return _Reply(200, [self._contract_public(row) for row in rows[:limit]])

    def _contract_item(self, contract_id: int) -> _Reply:
        contract = self.contracts.get(contract_id)
        if contract is None:
            return _Reply(404, {"errorText": f"Contract {contract_id} not found"})
        return _Reply(200, self._contract_public(contract))

    def _product_find(self, name: str) -> _Reply:
        for contract in self.contracts.values():
            if contract["product"] == name:
                tick, point_value = contract["tickSize"], contract["valuePerPoint"]
                return _Reply(200, {"name": name, "tickSize": tick, "valuePerPoint": point_value})
        return _Reply(404, {"errorText": f"Product {name} not found"})

    def _account(self, body: dict[str, Any]) -> dict[str, Any] | None:
        return next((row for row in self.accounts if row["id"] == body.get("accountId")), None)

    def _cash_balance(self, body: dict[str, Any]) -> _Reply:
        account = self._account(body)
        if account is None:
            return _Reply(200, {"errorText": "Account not found"})
        realized = self.realized.get(account["id"], Decimal(0))
        open_pnl = Decimal(0)
        for (account_id, contract_id), row in self.positions.items():
            if account_id == account["id"] and row["netPos"]:
                point_value = self.contracts[contract_id]["valuePerPoint"]
                open_pnl += (self.prices[contract_id] - row["netPrice"]) * row["netPos"] * point_value
        cash = Decimal(50_000) + realized
        return _Reply(
            200,
            {
                "accountId": account["id"],
                "totalCashValue": cash,
                "netLiq": cash + open_pnl,
                "realizedPnL": realized,
                "openPnL": open_pnl,
            },
        )

    # --- orders ---------------------------------------------------------------------------------------------

    def _validate_order(self, body: dict[str, Any], *, leg: bool = False) -> str | None:
        if not leg:
            account = self._account(body)
            if account is None or account["name"] != body.get("accountSpec"):
                return "Account not found or accountSpec does not match accountId"
            if body.get("isAutomated") is not True:
                return "isAutomated must be true for orders placed by a program"
            if not any(row["name"] == body.get("symbol") for row in self.contracts.values()):
                return f"Unknown contract {body.get('symbol')}"
            quantity = body.get("orderQty")
            if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity <= 0:
                return "orderQty must be a positive integer"
        if body.get("action") not in ("Buy", "Sell"):
            return "action must be Buy or Sell"
        order_type = body.get("orderType")
        if order_type not in ("Market", "Limit", "Stop", "StopLimit", "TrailingStop", "TrailingStopLimit"):
            return f"Unknown orderType {order_type}"
        if order_type in ("Limit", "StopLimit", "TrailingStopLimit") and body.get("price") is None:
            return "price is required"
        if (
            order_type in ("Stop", "StopLimit", "TrailingStop", "TrailingStopLimit")
            and body.get("stopPrice") is None
        ):
            return "stopPrice is required"
        if order_type.startswith("Trailing") and body.get("pegDifference") is None:
            return "pegDifference is required"
        if len(str(body.get("clOrdId") or "")) > 64:
            return "clOrdId is longer than 64 characters"
        return None

    def _new_order(
        self,
        *,
        account_id: int,
        contract_id: int,
        fields: dict[str, Any],
        quantity: int,
        status: str = "Working",
        parent_id: int | None = None,
    ) -> dict[str, Any]:
        order_id = next(self._ids)
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        order = {
            "id": order_id,
            "accountId": account_id,
            "contractId": contract_id,
            "action": fields["action"],
            "ordStatus": status,
            "ocoId": None,
            "parentId": parent_id,
            "linkedId": None,
            "timestamp": now,
            "admin": False,
        }
        version = {
            "id": next(self._ids),
            "orderId": order_id,
            "orderQty": quantity,
            "orderType": fields["orderType"],
            "price": _dec(fields.get("price")),
            "stopPrice": _dec(fields.get("stopPrice")),
            "pegDifference": _dec(fields.get("pegDifference")),
            "timeInForce": fields.get("timeInForce", "Day"),
            "timestamp": now,
        }
        if fields.get("clOrdId"):
            version["clOrdId"] = fields["clOrdId"]
        self.orders[order_id] = order
        self.versions[order_id] = [version]
        return order

    def _contract_of(self, body: dict[str, Any]) -> int:
        return self.contract_id(body["symbol"])

    def _place_order(self, body: dict[str, Any]) -> _Reply:
        error = self._validate_order(body)
        if error:
            return _Reply(200, {"failureReason": "UnknownReason", "failureText": error})
        order = self._new_order(
            account_id=body["accountId"],
            contract_id=self._contract_of(body),
            fields=body,
            quantity=body["orderQty"],
        )
        self._match()
        return _Reply(200, {"orderId": order["id"]})

    def _place_oso(self, body: dict[str, Any]) -> _Reply:
        error = self._validate_order(body)
        if error is None and not isinstance(body.get("bracket1"), dict):
            error = "bracket1 is required"
        brackets = [body[key] for key in ("bracket1", "bracket2") if isinstance(body.get(key), dict)]
        for bracket in brackets:
            error = error or self._validate_order(bracket, leg=True)
        if error:
            return _Reply(200, {"failureReason": "UnknownReason", "failureText": error})
        account_id, contract_id, quantity = body["accountId"], self._contract_of(body), body["orderQty"]
        entry = self._new_order(
            account_id=account_id, contract_id=contract_id, fields=body, quantity=quantity
        )
        if not self.keeps_bracket_client_ids:
            brackets = [{key: value for key, value in item.items() if key != "clOrdId"} for item in brackets]
        legs = [
            self._new_order(
                account_id=account_id,
                contract_id=contract_id,
                fields=bracket,
                quantity=quantity,
                status="Suspended",
                parent_id=entry["id"],
            )
            for bracket in brackets
        ]
        if len(legs) == 2:
            legs[0]["ocoId"], legs[1]["ocoId"] = legs[1]["id"], legs[0]["id"]
        self._match()
        answer: dict[str, Any] = {"orderId": entry["id"]}
        for number, leg in enumerate(legs, start=1):
            answer[f"oso{number}Id"] = leg["id"]
        return _Reply(200, answer)

    def _place_oco(self, body: dict[str, Any]) -> _Reply:
        error = self._validate_order(body)
        if error is None and not isinstance(body.get("other"), dict):
            error = "other is required"
        error = error or self._validate_order(body["other"], leg=True)
        if error:
            return _Reply(200, {"failureReason": "UnknownReason", "failureText": error})
        account_id, contract_id, quantity = body["accountId"], self._contract_of(body), body["orderQty"]
        first = self._new_order(
            account_id=account_id, contract_id=contract_id, fields=body, quantity=quantity
        )
        other = self._new_order(
            account_id=account_id, contract_id=contract_id, fields=body["other"], quantity=quantity
        )
        first["ocoId"], other["ocoId"] = other["id"], first["id"]
        self._match()
        return _Reply(200, {"orderId": first["id"], "ocoId": other["id"]})

    def _modify(self, body: dict[str, Any]) -> _Reply:
        order = self.orders.get(body.get("orderId"))
        if order is None:
            return _Reply(404, {"errorText": "Order not found"})
        if body.get("isAutomated") is not True:
            return _Reply(200, {"failureReason": "UnknownReason", "failureText": "isAutomated must be true"})
        if order["ordStatus"] not in OPEN_STATUSES:
            return _Reply(200, {"failureReason": "UnknownReason", "failureText": "Order is not working"})
        latest = self.versions[order["id"]][-1]
        self.versions[order["id"]].append(
            {
                "id": next(self._ids),
                "orderId": order["id"],
                "orderQty": body.get("orderQty", latest["orderQty"]),
                "orderType": body.get("orderType", latest["orderType"]),
                "price": _dec(body.get("price")),
                "stopPrice": _dec(body.get("stopPrice")),
                "pegDifference": latest["pegDifference"],
                "timeInForce": body.get("timeInForce", latest["timeInForce"]),
                "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            }
        )
        self._match()
        return _Reply(200, {"commandId": next(self._ids)})

    def _cancel(self, body: dict[str, Any]) -> _Reply:
        order = self.orders.get(body.get("orderId"))
        if order is None:
            return _Reply(404, {"errorText": "Order not found"})
        if body.get("isAutomated") is not True:
            return _Reply(200, {"failureReason": "UnknownReason", "failureText": "isAutomated must be true"})
        if order["ordStatus"] not in OPEN_STATUSES:
            return _Reply(200, {"failureReason": "UnknownReason", "failureText": "Order is not working"})
        self._cancel_with_children(order)
        return _Reply(200, {"commandId": next(self._ids)})

    def _cancel_with_children(self, order: dict[str, Any]) -> None:
        order["ordStatus"] = "Canceled"
        for child in self.orders.values():
            if child["parentId"] == order["id"] and child["ordStatus"] in OPEN_STATUSES:
                child["ordStatus"] = "Canceled"

    def _liquidate(self, body: dict[str, Any]) -> _Reply:
        account = self._account(body)
        contract_id = body.get("contractId")
        if account is None or contract_id not in self.contracts:
            return _Reply(200, {"errorText": "Unknown account or contract"})
        if body.get("admin") is not False:
            return _Reply(200, {"errorText": "admin must be false"})
        for order in list(self.orders.values()):
            if (
                order["accountId"] == account["id"]
                and order["contractId"] == contract_id
                and order["ordStatus"] in OPEN_STATUSES
            ):
                order["ordStatus"] = "Canceled"
        row = self.positions.get((account["id"], contract_id))
        net = row["netPos"] if row else 0
        if net == 0:
            return _Reply(200, {"orderId": None})
        order = self._new_order(
            account_id=account["id"],
            contract_id=contract_id,
            fields={"action": "Sell" if net > 0 else "Buy", "orderType": "Market", "timeInForce": "Day"},
            quantity=abs(net),
        )
        self._fill(order, self.prices[contract_id])
        return _Reply(200, {"orderId": order["id"]})

    # --- the market -----------------------------------------------------------------------------------------

    def _match(self) -> None:
        """Fill every working order the current prices reach, until nothing changes."""
        changed = True
        while changed:
            changed = False
            for order in list(self.orders.values()):
                if order["ordStatus"] != "Working":
                    continue
                version = self.versions[order["id"]][-1]
                price = self.prices[order["contractId"]]
                buy = order["action"] == "Buy"
                fill_at: Decimal | None = None
                if version["orderType"] == "Market":
                    fill_at = price
                elif version["orderType"] == "Limit" and (
                    price <= version["price"] if buy else price >= version["price"]
                ):
                    fill_at = version["price"]
                elif version["orderType"] in ("Stop", "TrailingStop") and (
                    price >= version["stopPrice"] if buy else price <= version["stopPrice"]
                ):
                    fill_at = price
                if fill_at is not None:
                    self._fill(order, fill_at)
                    changed = True

    def _fill(self, order: dict[str, Any], price: Decimal) -> None:
        version = self.versions[order["id"]][-1]
        quantity = version["orderQty"]
        order["ordStatus"] = "Filled"
        self.fills.append(
            {
                "id": next(self._ids),
                "orderId": order["id"],
                "contractId": order["contractId"],
                "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "tradeDate": {"year": 2026, "month": 1, "day": 15},
                "action": order["action"],
                "qty": quantity,
                "price": price,
                "active": True,
            }
        )
        self._apply_to_position(order["accountId"], order["contractId"], order["action"], quantity, price)
        for other in self.orders.values():
            if other["parentId"] == order["id"] and other["ordStatus"] == "Suspended":
                other["ordStatus"] = "Working"
        partner = self.orders.get(order["ocoId"]) if order["ocoId"] else None
        if partner is not None and partner["ordStatus"] in OPEN_STATUSES:
            partner["ordStatus"] = "Canceled"

    def _apply_to_position(
        self, account_id: int, contract_id: int, action: str, quantity: int, price: Decimal
    ) -> None:
        key = (account_id, contract_id)
        row = self.positions.get(key)
        if row is None:
            row = {
                "id": next(self._ids),
                "accountId": account_id,
                "contractId": contract_id,
                "netPos": 0,
                "netPrice": None,
                "bought": 0,
                "sold": 0,
                "timestamp": None,
            }
            self.positions[key] = row
        signed = quantity if action == "Buy" else -quantity
        before = row["netPos"]
        after = before + signed
        point_value = self.contracts[contract_id]["valuePerPoint"]
        if before == 0 or (before > 0) == (signed > 0):
            total = abs(before) + quantity
            row["netPrice"] = ((row["netPrice"] or Decimal(0)) * abs(before) + price * quantity) / total
        else:
            closed = min(abs(before), quantity)
            direction = 1 if before > 0 else -1
            pnl = (price - row["netPrice"]) * closed * direction * point_value
            self.realized[account_id] = self.realized.get(account_id, Decimal(0)) + pnl
            if after == 0:
                row["netPrice"] = None
            elif (after > 0) != (before > 0):
                row["netPrice"] = price
        row["netPos"] = after
        row["bought" if action == "Buy" else "sold"] += quantity
        row["timestamp"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key != "product"}


def _plain(value: Any) -> Any:
    """JSON as a test would compare it: Decimals become ints or floats."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, Decimal):
        return _number(value)
    return value


@contextmanager
def running_fake_tradovate(**options: Any) -> Iterator[FakeTradovate]:
    """A started fake, stopped on exit."""
    fake = FakeTradovate(**options)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
