"""The broker of a BrokerAccount: the paper simulation, or Tradovate with tokens shared in the database."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC

from django.conf import settings
from django.utils import timezone

from trading.brokers.base import Broker, BrokerNeedsAttention
from trading.brokers.paper import PaperBroker
from trading.brokers.tradovate import (
    DEFAULT_TIMEOUT,
    RENEW_BEFORE_EXPIRY,
    Timeout,
    TradovateBroker,
    TradovateClient,
    TradovateCredentials,
    TradovateToken,
)
from trading.claims import account_lease_release, account_lease_take
from trading.models import BrokerAccount

RENEWAL_LOCK_SECONDS = 60
RENEWAL_LOCK_WAIT_SECONDS = 30.0
RENEWAL_LOCK_POLL_SECONDS = 0.1
LEASE_FIELD = "token_renewal_until"
# A token read from the row is reused by this process for this long, and only while it is not due for renewal:
# a decision then reads no token, and a token renewed or replaced elsewhere reaches this process within it.
TOKEN_CACHE_SECONDS = 30.0
_tokens: dict[int, tuple[float, TradovateToken]] = {}
_tokens_lock = threading.Lock()


def token_cache_clear() -> None:
    """Forget every token this process reused (tests start so)."""
    with _tokens_lock:
        _tokens.clear()


class AccountTokenStore:
    """A Tradovate token store on the BrokerAccount row (encrypted), shared by every worker and process.

    The renewal lock is a lease on the same row (`token_renewal_until`), taken by a conditional UPDATE and
    never held in a database transaction: a login can take seconds and must not keep a row locked meanwhile.
    """

    def __init__(self, account_id: int) -> None:
        self.account_id = account_id
        self._renewing = False

    def get(self) -> TradovateToken | None:
        """The freshest token stored: the cached access token, else the OAuth token from the last connect."""
        with _tokens_lock:
            kept = _tokens.get(self.account_id)
        # Under the renewal lock the row is always read: another process may have just renewed the token.
        if (
            not self._renewing
            and kept is not None
            and time.monotonic() - kept[0] < TOKEN_CACHE_SECONDS
            and kept[1].expires_at - timezone.now() > RENEW_BEFORE_EXPIRY
        ):
            return kept[1]
        token = self._read()
        with _tokens_lock:
            if token is None:
                _tokens.pop(self.account_id, None)
            else:
                _tokens[self.account_id] = (time.monotonic(), token)
        return token

    def _read(self) -> TradovateToken | None:
        row = (
            BrokerAccount.objects.filter(pk=self.account_id)
            .values(
                "access_token",
                "access_token_expires_at",
                "access_token_source",
                "oauth_token",
                "oauth_token_expires_at",
                "broker_user_id",
            )
            .first()
        )
        if row is None:
            return None
        candidates = []
        if row["access_token"] and row["access_token_expires_at"]:
            source = row["access_token_source"] or "password"
            candidates.append(
                TradovateToken(row["access_token"], row["access_token_expires_at"].astimezone(UTC), source)
            )
        if row["oauth_token"] and row["oauth_token_expires_at"]:
            candidates.append(
                TradovateToken(row["oauth_token"], row["oauth_token_expires_at"].astimezone(UTC), "oauth")
            )
        if not candidates:
            return None
        token = max(candidates, key=lambda item: item.expires_at)
        if row["broker_user_id"] is not None:
            token = TradovateToken(token.access_token, token.expires_at, token.source, row["broker_user_id"])
        return token

    def put(self, token: TradovateToken) -> None:
        """Store a new token for everyone (one UPDATE of the token columns only)."""
        changes = {
            "access_token": token.access_token,
            "access_token_expires_at": token.expires_at,
            "access_token_source": token.source,
        }
        if token.user_id is not None:
            changes["broker_user_id"] = token.user_id
        BrokerAccount.objects.filter(pk=self.account_id).update(**changes)
        with _tokens_lock:
            _tokens[self.account_id] = (time.monotonic(), token)

    @contextmanager
    def renewal_lock(self) -> Iterator[None]:
        """Held while one worker renews or logs in; the others wait, then find its token.

        A lease on the account row (trading.leases): one holder across processes, machines and databases.
        """
        deadline = time.monotonic() + RENEWAL_LOCK_WAIT_SECONDS
        held_until = account_lease_take(self.account_id, LEASE_FIELD, RENEWAL_LOCK_SECONDS)
        while held_until is None and time.monotonic() < deadline:
            time.sleep(RENEWAL_LOCK_POLL_SECONDS)
            held_until = account_lease_take(self.account_id, LEASE_FIELD, RENEWAL_LOCK_SECONDS)
        self._renewing = True
        try:
            yield
        finally:
            self._renewing = False
            if held_until is not None:
                account_lease_release(self.account_id, LEASE_FIELD, held_until)


class ReadOnlyAccountTokenStore(AccountTokenStore):
    """The account's token store for a dry run: it reads the row, and keeps any new token in memory only."""

    def __init__(self, account_id: int) -> None:
        super().__init__(account_id)
        self._fresh: TradovateToken | None = None
        self._lock = threading.Lock()

    def get(self) -> TradovateToken | None:
        """The token got during this dry run, else the stored one."""
        return self._fresh or super().get()

    def put(self, token: TradovateToken) -> None:
        """Keep the token for this dry run only: a dry run writes nothing."""
        self._fresh = token

    @contextmanager
    def renewal_lock(self) -> Iterator[None]:
        """A lock of this process: nothing shared is written, so nothing shared needs guarding."""
        with self._lock:
            yield


def tradovate_timeout() -> Timeout:
    """The (connect, read) timeout of Tradovate calls: TRADOVATE_TIMEOUT when set, else the adapter's."""
    value = getattr(settings, "TRADOVATE_TIMEOUT", None)
    if not value:
        return DEFAULT_TIMEOUT
    connect, read = value
    return float(connect), float(read)


def broker_for_account(account: BrokerAccount, *, retrying: bool = False, dry_run: bool = False) -> Broker:
    """Return the broker that trades this account; BrokerNeedsAttention when it cannot be used as it is.

    `retrying` lets an owner's connection test (or reconciliation, once `retry_not_before` has passed) try an
    account marked as needing attention. `dry_run` keeps any new token out of the database.
    """
    if account.kind == BrokerAccount.Kind.PAPER:
        return PaperBroker(account)
    if account.needs_attention:
        waiting = account.retry_not_before is not None and account.retry_not_before > timezone.now()
        if not retrying or waiting:
            raise BrokerNeedsAttention(
                account.status_message or f"Broker account {account.name} needs attention: reconnect it.",
                reason=account.status_reason or "needs_attention",
            )
    credentials = None
    if account.username and account.password:
        credentials = TradovateCredentials(
            name=account.username,
            password=account.password,
            app_id=settings.TRADOVATE_APP_ID,
            app_version=settings.TRADOVATE_APP_VERSION,
            cid=settings.TRADOVATE_CID,
            sec=settings.TRADOVATE_SEC,
            device_id=account.device_id,
        )
    store = ReadOnlyAccountTokenStore(account.pk) if dry_run else AccountTokenStore(account.pk)
    if credentials is None and store.get() is None:
        raise BrokerNeedsAttention(
            f"Broker account {account.name} has no Tradovate login: connect it with OAuth or enter the "
            "username and password on the accounts page.",
            reason="not_connected",
        )
    base_url = settings.TRADOVATE_DEMO_URL if account.is_demo else settings.TRADOVATE_LIVE_URL
    return TradovateBroker(
        TradovateClient(base_url, credentials=credentials, token_store=store, timeout=tradovate_timeout())
    )
