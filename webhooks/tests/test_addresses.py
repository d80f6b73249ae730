"""Source-address checks: allow-lists, the tradingview preset, X-Forwarded-For from trusted proxies only."""

from ipaddress import ip_network

import pytest

from webhooks.addresses import TRADINGVIEW_ADDRESSES, address_allowed, client_address, parse_networks

TRADINGVIEW = parse_networks("tradingview")
PROXY = "10.0.0.5"
PROXIES = parse_networks("10.0.0.5, 10.0.1.0/24")


def test_the_tradingview_addresses_are_the_four_published_ones():
    assert set(TRADINGVIEW_ADDRESSES) == {"52.89.214.238", "34.212.75.30", "54.218.53.128", "52.32.178.7"}


def test_the_word_tradingview_expands_to_its_four_addresses_in_any_case():
    assert parse_networks("TradingView") == tuple(ip_network(address) for address in TRADINGVIEW_ADDRESSES)


def test_addresses_networks_and_the_preset_mix_with_blanks_and_repeats_dropped():
    networks = parse_networks(" 203.0.113.7 ,, 10.0.0.0/8, tradingview, 2001:db8::/32, 52.89.214.238, ")

    assert networks == (
        ip_network("203.0.113.7"),
        ip_network("10.0.0.0/8"),
        *(ip_network(address) for address in TRADINGVIEW_ADDRESSES),
        ip_network("2001:db8::/32"),
    )


def test_a_list_of_entries_is_accepted_as_well_as_a_string():
    assert parse_networks(["203.0.113.7", " tradingview "]) == parse_networks("203.0.113.7,tradingview")


def test_an_empty_setting_is_an_empty_allow_list():
    assert parse_networks("") == ()
    assert parse_networks(" , ") == ()
    assert parse_networks([]) == ()


@pytest.mark.parametrize(
    ("entry", "detail"),
    [
        ("tradingview.com", "does not appear to be an IPv4 or IPv6 network"),
        ("300.1.1.1", "does not appear to be an IPv4 or IPv6 network"),
        ("10.0.0.1/24", "has host bits set"),
        ("10.0.0.0/33", "does not appear to be an IPv4 or IPv6 network"),
        ("52.89.214.238 34.212.75.30", "does not appear to be an IPv4 or IPv6 network"),
    ],
)
def test_a_bad_entry_is_refused_with_the_entry_and_the_setting_named(entry, detail):
    with pytest.raises(ValueError, match="WEBHOOK_ALLOWED_IPS") as raised:
        parse_networks(f"203.0.113.7,{entry}", setting="WEBHOOK_ALLOWED_IPS")

    message = str(raised.value)
    assert f'"{entry}" is not an IP address or network' in message
    assert detail in message
    assert "or the word tradingview" in message


@pytest.mark.parametrize("address", ["203.0.113.7", "::1", "not an address", ""])
def test_an_empty_allow_list_allows_any_source(address):
    assert address_allowed(address, ())


@pytest.mark.parametrize("address", TRADINGVIEW_ADDRESSES)
def test_the_tradingview_preset_allows_tradingview(address):
    assert address_allowed(address, TRADINGVIEW)


@pytest.mark.parametrize(
    "address", ["52.89.214.239", "203.0.113.7", "2001:db8::1", "", "garbage", "52.89.214.238/32"]
)
def test_the_tradingview_preset_refuses_everyone_else(address):
    assert not address_allowed(address, TRADINGVIEW)


def test_networks_and_ipv6_are_matched():
    allowed = parse_networks("10.0.0.0/8, 2001:db8::/32")

    assert address_allowed("10.200.3.4", allowed)
    assert address_allowed("2001:db8:1::7", allowed)
    assert address_allowed("2001:DB8::7", allowed)
    assert not address_allowed("11.0.0.1", allowed)
    assert not address_allowed("2001:db9::1", allowed)


def test_an_ipv4_peer_seen_through_a_dual_stack_socket_is_matched_as_ipv4():
    assert address_allowed("::ffff:52.89.214.238", TRADINGVIEW)


def test_without_trusted_proxies_forwarded_for_is_ignored():
    assert client_address("203.0.113.7", "52.89.214.238", ()) == "203.0.113.7"


def test_forwarded_for_from_an_untrusted_peer_is_ignored():
    assert client_address("203.0.113.7", "52.89.214.238", PROXIES) == "203.0.113.7"


def test_a_trusted_proxy_is_believed_about_the_client():
    assert client_address(PROXY, "52.89.214.238", PROXIES) == "52.89.214.238"


def test_a_spoofed_address_prepended_by_the_client_is_skipped():
    # The client sent "X-Forwarded-For: 52.89.214.238"; our proxy appended the address it really saw.
    assert client_address(PROXY, "52.89.214.238, 198.51.100.9", PROXIES) == "198.51.100.9"


def test_a_chain_of_trusted_proxies_is_walked_to_the_first_untrusted_address():
    forwarded_for = "52.89.214.238, 198.51.100.9, 10.0.1.20, 10.0.1.21"

    assert client_address(PROXY, forwarded_for, PROXIES) == "198.51.100.9"


def test_a_chain_made_only_of_trusted_proxies_gives_the_farthest_one():
    assert client_address(PROXY, "10.0.1.20, 10.0.1.21", PROXIES) == "10.0.1.20"


@pytest.mark.parametrize(
    "forwarded_for",
    ["", "   ", "unknown", "52.89.214.238, unknown", "52.89.214.238,,10.0.1.20", "not-an-ip", "[2001:db8::1"],
)
def test_missing_or_malformed_forwarded_for_falls_back_to_the_peer(forwarded_for):
    assert client_address(PROXY, forwarded_for, PROXIES) == PROXY


def test_none_forwarded_for_gives_the_peer():
    assert client_address(PROXY, None, PROXIES) == PROXY


def test_a_malformed_hop_behind_an_untrusted_one_is_never_reached():
    assert client_address(PROXY, "garbage, 52.89.214.238", PROXIES) == "52.89.214.238"


@pytest.mark.parametrize(
    ("forwarded_for", "expected"),
    [
        ("52.89.214.238:51234", "52.89.214.238"),
        ("[2001:db8::7]:443", "2001:db8::7"),
        ("[2001:db8::7]", "2001:db8::7"),
        ("2001:db8::7", "2001:db8::7"),
        ("2001:DB8:0:0::7", "2001:db8::7"),
        ("::ffff:52.89.214.238", "52.89.214.238"),
    ],
)
def test_forwarded_addresses_with_ports_or_ipv6_are_read_and_normalized(forwarded_for, expected):
    assert client_address(PROXY, forwarded_for, PROXIES) == expected


def test_ipv6_proxies_are_trusted_like_ipv4_ones():
    proxies = parse_networks("fd00::/8")

    assert client_address("fd00::1", "2001:db8::7, fd00::2", proxies) == "2001:db8::7"


def test_the_peer_is_normalized_and_an_unparseable_peer_is_returned_as_is():
    assert client_address("::ffff:10.0.0.5", "52.89.214.238", PROXIES) == "52.89.214.238"
    assert client_address("::FFFF:203.0.113.7", None, PROXIES) == "203.0.113.7"
    assert client_address("", "52.89.214.238", PROXIES) == ""
