"""Who the client really is behind reverse proxies (research anchors §2.3).

Forwarding headers are believed only when the TCP peer is a configured trusted proxy;
then the client is the right-most address in ``X-Forwarded-For`` (or ``Forwarded:
for=``) that is not itself a trusted proxy, so a client cannot spoof its address by
sending the header itself. ``X-Forwarded-Proto: https`` (or ``Forwarded: proto=https``)
from a trusted proxy marks the request secure.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ClientInfo:
    ip: str
    secure: bool
    #: Forwarding headers came from a peer we do not trust (ignored).
    untrusted_forwarding: bool = False


def parse_networks(items: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(item, strict=False) for item in items]


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip().strip('"')
    if text.startswith("["):  # Forwarded: for="[2001:db8::1]:4711"
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _trusted(ip: str, networks: list[Network]) -> bool:
    addr = _address(ip)
    return addr is not None and any(addr in net for net in networks)


def _forwarded_pairs(value: str) -> list[dict[str, str]]:
    """RFC 7239 ``Forwarded``: one dict per hop, keys lower-cased."""
    hops = []
    for element in value.split(","):
        pairs: dict[str, str] = {}
        for part in element.split(";"):
            key, sep, val = part.partition("=")
            if sep:
                pairs[key.strip().lower()] = val.strip().strip('"')
        hops.append(pairs)
    return hops


def resolve_client(
    peer_ip: str, scheme_secure: bool, headers: dict[str, str], trusted: list[Network]
) -> ClientInfo:
    """The client address and whether the request was HTTPS end to end."""
    forwarded = headers.get("forwarded")
    xff = headers.get("x-forwarded-for")
    has_forwarding = bool(forwarded or xff or headers.get("x-forwarded-proto"))
    if not trusted or not _trusted(peer_ip, trusted):
        return ClientInfo(peer_ip, scheme_secure, untrusted_forwarding=has_forwarding)
    chain: list[str] = []
    proto: str | None = None
    if forwarded:
        hops = _forwarded_pairs(forwarded)
        chain = [h["for"] for h in hops if "for" in h]
        protos = [h["proto"] for h in hops if "proto" in h]
        proto = protos[-1] if protos else None
    elif xff:
        chain = [p.strip() for p in xff.split(",") if p.strip()]
    if proto is None:
        xfp = headers.get("x-forwarded-proto")
        proto = xfp.split(",")[-1].strip() if xfp else None
    client = peer_ip
    for hop in reversed(chain):
        addr = _address(hop)
        if addr is None:
            break  # "unknown" or obfuscated: stop at the last address we can name
        client = str(addr)
        if not any(addr in net for net in trusted):
            break
    secure = scheme_secure or (proto or "").lower() == "https"
    return ClientInfo(client, secure)
