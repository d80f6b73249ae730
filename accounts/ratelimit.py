"""A limiter of failed attempts (logins, access keys) kept in Django's cache, so every process shares it."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest

LOGIN = "login"
ACCESS_KEY = "access-key"

# Ten failures in fifteen minutes, per address and per account; settings LOGIN_RATE_LIMIT and KEY_RATE_LIMIT.
DEFAULT_RATE = "10/900"
_SETTING_FOR_SCOPE = {LOGIN: "LOGIN_RATE_LIMIT", ACCESS_KEY: "KEY_RATE_LIMIT"}


@dataclass(frozen=True)
class Rate:
    """At most `limit` failures within `window` seconds."""

    limit: int
    window: int

    @classmethod
    def parse(cls, value: str, *, setting: str = "rate limit") -> Rate:
        """Read "attempts/seconds", for example "10/900"."""
        try:
            limit_text, window_text = str(value).split("/")
            rate = cls(limit=int(limit_text), window=int(window_text))
        except ValueError:
            rate = None
        if rate is None or rate.limit < 1 or rate.window < 1:
            raise ImproperlyConfigured(
                f'{setting} is "{value}"; write it as attempts/seconds with both numbers at least 1, '
                f'for example "{DEFAULT_RATE}" for ten failed attempts in fifteen minutes.'
            )
        return rate


@dataclass(frozen=True)
class Limited:
    """The answer when an identity has used up its attempts: how long until it may try again."""

    retry_after: int

    @property
    def minutes(self) -> int:
        """The wait rounded up to whole minutes, for people."""
        return max(1, math.ceil(self.retry_after / 60))


def rate_for(scope: str) -> Rate:
    """The configured rate for a scope."""
    setting = _SETTING_FOR_SCOPE[scope]
    return Rate.parse(getattr(settings, setting, DEFAULT_RATE), setting=setting)


def check(scope: str, identities: Iterable[str]) -> Limited | None:
    """Return Limited when any identity has failed `limit` times in the current window, else None."""
    rate = rate_for(scope)
    now = time.time()
    keys = [_cache_key(scope, identity, rate, now) for identity in identities]
    counts = cache.get_many(keys)
    if any(int(count) >= rate.limit for count in counts.values()):
        return Limited(retry_after=_seconds_left(rate, now))
    return None


def record_failure(scope: str, identities: Iterable[str]) -> None:
    """Count one failed attempt against each identity."""
    rate = rate_for(scope)
    now = time.time()
    for identity in identities:
        key = _cache_key(scope, identity, rate, now)
        # add() creates the counter only if absent, then incr() is atomic on Redis; the file cache may drop a
        # count when two processes race, which only ever errs towards one more attempt.
        cache.add(key, 0, timeout=rate.window + 1)
        try:
            cache.incr(key)
        except ValueError:  # expired between add() and incr()
            cache.set(key, 1, timeout=rate.window + 1)


def reset(scope: str, identities: Iterable[str]) -> None:
    """Forget the failures of identities, for example an account after a successful login."""
    rate = rate_for(scope)
    now = time.time()
    cache.delete_many([_cache_key(scope, identity, rate, now) for identity in identities])


def ip_identity(request: HttpRequest) -> str:
    """The identity of the client's address."""
    return f"ip:{client_ip(request)}"


def account_identity(username: str) -> str:
    """The identity of an account by the name typed for it (case does not give extra attempts)."""
    return f"account:{username.strip().casefold()}"


def client_ip(request: HttpRequest) -> str:
    """The client's address; X-Forwarded-For is believed only from addresses in TRUSTED_PROXIES."""
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = _networks(tuple(getattr(settings, "TRUSTED_PROXIES", ())))
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    peer = _address(remote)
    if peer is None or not forwarded or not _within(peer, proxies):
        return remote
    # Each proxy appends the address it saw: walk back from the right past our own proxies.
    client = peer
    for hop in reversed(forwarded.split(",")):
        address = _address(hop.strip())
        if address is None:
            break
        client = address
        if not _within(address, proxies):
            break
    return str(client)


def _cache_key(scope: str, identity: str, rate: Rate, now: float) -> str:
    # Hashing keeps any username a valid cache key; the window number retires old counters by itself.
    digest = hashlib.sha256(identity.encode()).hexdigest()[:40]
    return f"accounts:ratelimit:{scope}:{rate.window}:{int(now // rate.window)}:{digest}"


def _seconds_left(rate: Rate, now: float) -> int:
    return max(1, math.ceil(rate.window - (now % rate.window)))


@lru_cache(maxsize=16)
def _networks(entries: tuple[str, ...]) -> tuple[IPv4Network | IPv6Network, ...]:
    networks = []
    for entry in entries:
        try:
            networks.append(ip_network(entry.strip(), strict=False))
        except ValueError:
            continue  # a malformed entry cannot vouch for anyone: skipping it trusts less, never more
    return tuple(networks)


def _address(text: str) -> IPv4Address | IPv6Address | None:
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: IPv4Address | IPv6Address, networks: Iterable[IPv4Network | IPv6Network]) -> bool:
    return any(address.version == network.version and address in network for network in networks)
