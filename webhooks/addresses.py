"""Source-address checks for webhooks: allow-lists, trusted proxies and X-Forwarded-For; pure and fast."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Final, TypeAlias

IPAddress: TypeAlias = IPv4Address | IPv6Address
IPNetwork: TypeAlias = IPv4Network | IPv6Network

# TradingView's published webhook source addresses (shared/specs/webhook.md).
TRADINGVIEW_ADDRESSES: Final = ("52.89.214.238", "34.212.75.30", "54.218.53.128", "52.32.178.7")
TRADINGVIEW_PRESET: Final = "tradingview"


def parse_networks(value: str | Iterable[str], *, setting: str | None = None) -> tuple[IPNetwork, ...]:
    """Parse comma-separated addresses or networks ("tradingview" expands); ValueError on a bad entry."""
    entries = value.split(",") if isinstance(value, str) else value
    networks: list[IPNetwork] = []
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        candidates = TRADINGVIEW_ADDRESSES if entry.lower() == TRADINGVIEW_PRESET else (entry,)
        for candidate in candidates:
            try:
                network = ip_network(candidate)
            except ValueError as error:
                prefix = f"{setting}: " if setting else ""
                raise ValueError(
                    f'{prefix}"{entry}" is not an IP address or network ({error}); use addresses such as '
                    f"203.0.113.7 or 2001:db8::1, networks such as 203.0.113.0/24, or the word "
                    f"{TRADINGVIEW_PRESET}, separated by commas"
                ) from None
            if network not in networks:
                networks.append(network)
    return tuple(networks)


def client_address(
    remote_addr: str, forwarded_for: str | None, trusted_proxies: Collection[IPNetwork]
) -> str:
    """The client's address: X-Forwarded-For is believed only when the connecting peer is a trusted proxy."""
    peer = _address(remote_addr)
    if peer is None:
        return remote_addr
    if not forwarded_for or not trusted_proxies or not _within(peer, trusted_proxies):
        return str(peer)
    # Each proxy appends the address it saw, so walk from the right past our own proxies; the first
    # address a trusted proxy did not vouch for is as far back as the chain can be believed.
    client = peer
    for hop in reversed(forwarded_for.split(",")):
        address = _hop_address(hop)
        if address is None:
            return str(peer)
        client = address
        if not _within(address, trusted_proxies):
            break
    return str(client)


def address_allowed(address: str, allowed_networks: Collection[IPNetwork]) -> bool:
    """Whether an address is in the allow-list; an empty allow-list allows any address."""
    if not allowed_networks:
        return True
    parsed = _address(address)
    return parsed is not None and _within(parsed, allowed_networks)


def _within(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    """Whether an address belongs to any of the networks (versions that differ never match)."""
    return any(address in network for network in networks)


@lru_cache(maxsize=4096)
def _address(text: str) -> IPAddress | None:
    """Parse an address, unwrapping IPv4-mapped IPv6 (dual-stack sockets); None when malformed."""
    try:
        address = ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _hop_address(hop: str) -> IPAddress | None:
    """Parse one X-Forwarded-For entry, tolerating a port ("203.0.113.7:443", "[2001:db8::1]:443")."""
    hop = hop.strip()
    if hop.startswith("["):
        end = hop.find("]")
        if end == -1 or (end + 1 < len(hop) and hop[end + 1] != ":"):
            return None
        hop = hop[1:end]
    elif hop.count(":") == 1:
        hop = hop.partition(":")[0]
    return _address(hop) if hop else None
