"""The real client behind reverse proxies (xmppd/http/proxy.py): RFC 7239 and
X-Forwarded-For parsing, the right-to-left walk past trusted proxies, the one configured
header family, the scheme, and malformed headers from a trusted proxy."""

from __future__ import annotations

import ipaddress

import pytest

from xmppd.http.h2c import asks_h2c
from xmppd.http.proxy import (
    Hop,
    Malformed,
    ProxyPolicy,
    forwarded_hops,
    parse_forwarded_element,
    parse_node,
    xff_hops,
)
from xmppd.http.request import header_map

XFF = ProxyPolicy.of(["127.0.0.1", "10.0.0.0/8"], "x-forwarded-for")
FWD = ProxyPolicy.of(["127.0.0.1", "10.0.0.0/8"], "forwarded")


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


# ------------------------------------------------------------------ RFC 7239 syntax
@pytest.mark.parametrize(
    ("node", "address"),
    [
        ("192.0.2.43", "192.0.2.43"),
        ("192.0.2.43:47011", "192.0.2.43"),
        ("192.0.2.43:_port", "192.0.2.43"),
        ("[2001:db8:cafe::17]", "2001:db8:cafe::17"),
        ("[2001:db8:cafe::17]:4711", "2001:db8:cafe::17"),
        ("[::ffff:198.51.100.7]", "198.51.100.7"),  # IPv4-mapped counts as IPv4
        ("unknown", None),
        ("UNKNOWN:80", None),
        ("_hidden", None),
        ("_SEVKISEK:_port.1", None),
    ],
)
def test_nodes(node: str, address: str | None) -> None:
    assert parse_node(node) == (ip(address) if address else None)


@pytest.mark.parametrize(
    "node",
    [
        "",
        "2001:db8::1",  # IPv6 needs brackets in Forwarded
        "[2001:db8::1",
        "[2001:db8::1]80",
        "[2001:db8::1]:port",
        "[192.0.2.1]",
        "[fe80::1%eth0]",
        "192.0.2.1:123456",
        "192.0.2.256",
        "192.0.2.1.5",
        "01.2.3.4",
        "example.com",
        "_",
        "_bad!",
    ],
)
def test_bad_nodes(node: str) -> None:
    with pytest.raises(Malformed):
        parse_node(node)


def test_forwarded_elements_quoted_strings_and_case() -> None:
    assert parse_forwarded_element('For="[2001:db8:cafe::17]:4711";PROTO=https') == {
        "for": "[2001:db8:cafe::17]:4711",
        "proto": "https",
    }
    assert parse_forwarded_element("for=192.0.2.60;proto=http;by=203.0.113.43") == {
        "for": "192.0.2.60",
        "proto": "http",
        "by": "203.0.113.43",
    }
    assert parse_forwarded_element(r'for="_a\"b";;host="x\\y"') == {"for": '_a"b', "host": "x\\y"}
    assert parse_forwarded_element(" for = 192.0.2.1 ; proto=https ") == {
        "for": "192.0.2.1",
        "proto": "https",
    }
    for bad in ("for", "for=1.2.3.4;for=5.6.7.8", 'for="1.2.3.4', "for=a b", "=x", 'for="a"b'):
        with pytest.raises(Malformed):
            parse_forwarded_element(bad)


def test_forwarded_hops_keep_broken_elements_in_place() -> None:
    hops = forwarded_hops('for=192.0.2.43, for="[2001:db8::1]";proto=https,, for=unknown')
    assert hops == [Hop(ip("192.0.2.43")), Hop(ip("2001:db8::1"), "https"), Hop(None)]
    # the client's unbalanced quote stays in its own element: ours on the right is intact
    hops = forwarded_hops('for="1.2.3.4, for=203.0.113.5')
    assert isinstance(hops[0], Malformed) and hops[1] == Hop(ip("203.0.113.5"))


def test_xff_hops() -> None:
    assert xff_hops(" 192.0.2.1 ,2001:db8::7, [2001:db8::8]:443,192.0.2.2:80, unknown") == [
        Hop(ip("192.0.2.1")),
        Hop(ip("2001:db8::7")),
        Hop(ip("2001:db8::8")),
        Hop(ip("192.0.2.2")),
        Hop(None),
    ]
    assert isinstance(xff_hops("not-an-ip, 192.0.2.1")[0], Malformed)


# ------------------------------------------------------------------ the walk
def test_only_a_trusted_peer_is_believed() -> None:
    headers = {"x-forwarded-for": "203.0.113.5", "x-forwarded-proto": "https"}
    spoofed = XFF.resolve("198.51.100.1", False, headers)
    assert (spoofed.ip, spoofed.secure, spoofed.proxied) == ("198.51.100.1", False, True)
    real = XFF.resolve("127.0.0.1", False, headers)
    assert (real.ip, real.secure, real.proxied) == ("203.0.113.5", True, True)
    # a direct client without forwarding headers is not "proxied"; the trusted peer is
    assert not XFF.resolve("198.51.100.1", True, {}).proxied
    direct = XFF.resolve("127.0.0.1", True, {})
    assert (direct.ip, direct.secure, direct.proxied) == ("127.0.0.1", True, True)
    # IPv4-mapped peers are the same proxy
    assert XFF.resolve("::ffff:127.0.0.1", False, headers).ip == "203.0.113.5"


def test_right_to_left_past_trusted_proxies_only() -> None:
    # the client prepended fake hops; our two proxies appended the real chain
    chain = {"x-forwarded-for": "127.0.0.1, 1.2.3.4, 203.0.113.5, 10.1.2.3"}
    assert XFF.resolve("127.0.0.1", False, chain).ip == "203.0.113.5"
    # a trusted address left of the client is the client's claim: never reached
    assert XFF.resolve("127.0.0.1", False, {"x-forwarded-for": "10.0.0.9, 8.8.8.8"}).ip == (
        "8.8.8.8"
    )
    # every hop trusted: the left-most (a local client through the local proxy)
    assert XFF.resolve("127.0.0.1", False, {"x-forwarded-for": "10.0.0.9, 127.0.0.1"}).ip == (
        "10.0.0.9"
    )
    fwd = {"forwarded": 'for=1.2.3.4;proto=https, for="[2001:db8::7]:4711";proto=http'}
    info = FWD.resolve("10.0.0.2", False, fwd)
    assert info.ip == "2001:db8::7" and not info.secure  # proto of the client's own hop


def test_multiple_header_lines_are_one_list() -> None:
    raw = [
        (b"X-Forwarded-For", b"127.0.0.1"),  # the client's line
        (b"x-forwarded-for", b"203.0.113.5"),  # the proxy's own line, added after
        (b"Forwarded", b'for="_spoof"'),
        (b"forwarded", b"for=198.51.100.2;proto=https"),
    ]
    headers = header_map(raw)
    assert XFF.resolve("127.0.0.1", False, headers).ip == "203.0.113.5"
    info = FWD.resolve("127.0.0.1", False, headers)
    assert info.ip == "198.51.100.2" and info.secure


def test_only_the_configured_family_counts() -> None:
    # nginx sets X-Forwarded-For and passes a client's Forwarded through, or vice versa
    both = {
        "x-forwarded-for": "198.51.100.9",
        "x-forwarded-proto": "http",
        "forwarded": "for=127.0.0.1;proto=https",
    }
    info = XFF.resolve("127.0.0.1", False, both)
    assert (info.ip, info.secure) == ("198.51.100.9", False)
    flipped = {
        "forwarded": "for=198.51.100.9;proto=http",
        "x-forwarded-for": "127.0.0.1",
        "x-forwarded-proto": "https",
    }
    info = FWD.resolve("127.0.0.1", False, flipped)
    assert (info.ip, info.secure) == ("198.51.100.9", False)
    # Forwarded alone from the trusted peer with an x-forwarded-for policy: the peer
    only = XFF.resolve("127.0.0.1", False, {"forwarded": "for=203.0.113.5;proto=https"})
    assert (only.ip, only.secure, only.proxied) == ("127.0.0.1", False, True)


def test_scheme_from_the_proxy() -> None:
    xff = {"x-forwarded-for": "203.0.113.5"}
    assert not XFF.resolve("127.0.0.1", True, xff).secure  # TLS to us says nothing of the client
    assert XFF.resolve("127.0.0.1", False, {**xff, "x-forwarded-proto": "HTTPS"}).secure
    assert not XFF.resolve("127.0.0.1", False, {**xff, "x-forwarded-proto": "https, http"}).secure
    assert not XFF.resolve("127.0.0.1", False, {**xff, "x-forwarded-proto": " , "}).secure
    assert XFF.resolve("127.0.0.1", False, {"x-forwarded-proto": "https"}).ip == "127.0.0.1"
    assert not FWD.resolve("127.0.0.1", True, {"forwarded": "for=203.0.113.5"}).secure
    assert FWD.resolve("127.0.0.1", False, {"forwarded": "for=unknown;proto=https"}).secure


def test_unknown_and_obfuscated_hops_stop_at_the_peer() -> None:
    for value in ("unknown", "_hidden, 10.0.0.3", "1.2.3.4, unknown"):
        assert XFF.resolve("127.0.0.1", False, {"x-forwarded-for": value}).ip == "127.0.0.1"
    info = FWD.resolve("10.0.0.2", False, {"forwarded": 'for="_gazonk";proto=https'})
    assert (info.ip, info.problem) == ("10.0.0.2", None)
    assert FWD.resolve("10.0.0.2", False, {"forwarded": "proto=https"}).ip == "10.0.0.2"


@pytest.mark.parametrize(
    ("policy", "value"),
    [
        (XFF, "garbage!!"),
        (XFF, "203.0.113.5, 1.2.3"),
        (XFF, "\x00\xff"),
        (FWD, 'for="203.0.113.5'),
        (FWD, "for=203.0.113.5;for=1.2.3.4"),
        (FWD, "for=2001:db8::1"),
        (FWD, "nonsense"),
        (FWD, "for=" + "9" * 5000),
    ],
)
def test_garbage_from_a_trusted_proxy_falls_back_to_it(policy: ProxyPolicy, value: str) -> None:
    info = policy.resolve("127.0.0.1", False, {policy.header: value, "x-forwarded-proto": "https"})
    assert (info.ip, info.secure, info.proxied) == ("127.0.0.1", False, True)
    assert info.problem and info.problem.startswith(policy.header)
    assert value not in info.problem  # safe to log: says what, not the client's bytes


def test_garbage_left_of_the_client_is_never_read() -> None:
    info = XFF.resolve("127.0.0.1", False, {"x-forwarded-for": "!!, 203.0.113.5"})
    assert (info.ip, info.problem) == ("203.0.113.5", None)
    info = FWD.resolve("127.0.0.1", False, {"forwarded": 'for="x;y, for=203.0.113.5'})
    assert (info.ip, info.problem) == ("203.0.113.5", None)


def test_policy_rejects_unknown_header_family() -> None:
    with pytest.raises(ValueError, match="forwarded_header"):
        ProxyPolicy.of([], "x-real-ip")


def test_h2c_request_detection() -> None:
    assert asks_h2c([(b"Upgrade", b" H2C "), (b"connection", b"upgrade")])
    assert not asks_h2c([(b"upgrade", b"h2c"), (b"content-length", b"3")])
    assert not asks_h2c([(b"upgrade", b"websocket")])
    assert not asks_h2c([])


def test_config_defaults_and_check() -> None:
    from xmppd.config import Config, ConfigError, validate

    config = Config()
    assert config.http.forwarded_header == "x-forwarded-for" and config.http.h2c is False
    validate(config)
    config.http.forwarded_header = "x-real-ip"
    with pytest.raises(ConfigError, match=r"http\.forwarded_header"):
        validate(config)
