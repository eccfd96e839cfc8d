"""Who the client really is behind a reverse proxy, and whether it used HTTPS.

Only the TCP peer is known for sure. Forwarding headers are read only when that peer is in
``http.trusted_proxies``, and only the one family the proxy is configured to set
(``http.forwarded_header``): ``X-Forwarded-For`` with ``X-Forwarded-Proto``, or RFC 7239
``Forwarded`` (``for=`` and ``proto=``). The other family is ignored: a proxy that sets one
usually passes the other through from the client untouched.

The address list is walked from the right (what our own proxy appended) leftwards past
trusted proxies; the first address that is not one of them is the client, and nothing to
its left (the client's own words) is read. A hop that names no address (``unknown``, an
obfuscated identifier, a missing ``for=``) or a malformed one ends the walk at the TCP peer.

A request that came through a proxy (the peer is a trusted proxy, or it carries forwarding
headers at all) is ``proxied``: it never gets the loopback exemption, whatever it claims.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

XFF = "x-forwarded-for"
FORWARDED = "forwarded"
#: The values of ``http.forwarded_header``.
HEADER_FAMILIES = (XFF, FORWARDED)
#: Headers that say a request passed a proxy, whoever sent them.
FORWARDING_HEADERS = (FORWARDED, XFF, "x-forwarded-proto", "x-forwarded-host", "x-real-ip", "via")
_SECURE_PROTOS = ("https", "wss")

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: A token, leniently with ":[]" too: a proxy that forgets to quote ``1.2.3.4:80`` or
#: ``[2001:db8::1]`` is still unambiguous (RFC 7239 §4 asks for quotes).
_BARE_VALUE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z:\[\]-]+")
_QUOTED = re.compile(r'"((?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*)"')
_OBFUSCATED = re.compile(r"_[A-Za-z0-9._-]+")  # RFC 7239 §6.3 obfnode / obfport
_PORT = re.compile(r"[0-9]{1,5}")


class Malformed(ValueError):
    """A forwarding header we cannot read; the reason is safe to log."""


@dataclass(frozen=True, slots=True)
class ClientInfo:
    ip: str
    secure: bool
    #: Came through a proxy (a trusted one, or forwarding headers from anyone): no
    #: loopback exemption, whatever address it names.
    proxied: bool = False
    #: Why a trusted proxy's header could not be used (``ip`` is then the proxy's).
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class Hop:
    """One proxy's report: the address it got the request from (None: not disclosed)."""

    address: Address | None
    proto: str | None = None


def parse_networks(items: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(item, strict=False) for item in items]


def plain_address(text: str) -> Address | None:
    """``text`` as an address (IPv4-mapped IPv6 as IPv4), or None."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# ------------------------------------------------------------------ parsing
def parse_node(text: str, *, bare_ipv6: bool = False) -> Address | None:
    """An RFC 7239 §6 node (``1.2.3.4``, ``1.2.3.4:80``, ``[v6]``, ``[v6]:80``,
    ``unknown``, ``_obfuscated``, each with an optional ``:port``): its address, or None
    when it names none. ``bare_ipv6``: X-Forwarded-For writes IPv6 without brackets."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise Malformed("unclosed [")
        name, rest = text[1:end], text[end + 1 :]
        if rest and not (rest.startswith(":") and _valid_port(rest[1:])):
            raise Malformed("bad port")
        return _ip(name, version=6)
    if bare_ipv6 and text.count(":") > 1:
        return _ip(text, version=6)
    name, colon, port = text.partition(":")
    if colon and not _valid_port(port):
        raise Malformed("bad port")
    if name.lower() == "unknown" or _OBFUSCATED.fullmatch(name):
        return None
    return _ip(name, version=4)


def _valid_port(port: str) -> bool:
    return bool(_PORT.fullmatch(port) or _OBFUSCATED.fullmatch(port))


def _ip(text: str, version: int) -> Address:
    try:
        address = ipaddress.IPv4Address(text) if version == 4 else ipaddress.IPv6Address(text)
    except ValueError:
        raise Malformed("not an address") from None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            raise Malformed("zone id")
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
    return address


def parse_forwarded_element(element: str) -> dict[str, str]:
    """One RFC 7239 §4 ``forwarded-element``: ``for=a;proto=https`` -> parameters by
    lower-cased name, quoted strings unquoted. Empty pairs are allowed, repeats are not."""
    params: dict[str, str] = {}
    for pair in element.split(";"):
        pair = pair.strip(" \t")
        if not pair:
            continue
        name, eq, raw = pair.partition("=")
        name, raw = name.rstrip(" \t").lower(), raw.lstrip(" \t")
        if not eq or not _TOKEN.fullmatch(name):
            raise Malformed("not a name=value pair")
        if name in params:
            raise Malformed(f"{name}= twice in one element")
        params[name] = _value(raw)
    return params


def _value(raw: str) -> str:
    if raw.startswith('"'):
        quoted = _QUOTED.fullmatch(raw)
        if quoted is None:
            raise Malformed("bad quoted string")
        return re.sub(r"\\(.)", r"\1", quoted.group(1))
    if not _BARE_VALUE.fullmatch(raw):
        raise Malformed("bad value")
    return raw


def forwarded_hops(value: str) -> list[Hop | Malformed]:
    """The hops of a ``Forwarded`` header (repeated lines joined with ", "), left to right.

    The list is split at every comma before anything is unquoted: no ``for``/``proto``/
    ``by``/``host`` value can contain one, and so a client's broken quoting on the left
    can never swallow the element our proxy appended on the right. A broken element is
    kept as :class:`Malformed` where it stands; the walk only fails if it reaches it.
    """
    hops: list[Hop | Malformed] = []
    for element in value.split(","):
        if not element.strip(" \t"):
            continue  # RFC 9110 §5.6.1: empty list elements are ignored
        try:
            params = parse_forwarded_element(element)
            node = params.get("for")
            address = parse_node(node) if node is not None else None
        except Malformed as exc:
            hops.append(exc)
            continue
        hops.append(Hop(address, params.get("proto")))
    return hops


def xff_hops(value: str) -> list[Hop | Malformed]:
    """The hops of ``X-Forwarded-For`` (repeated lines joined with ", "), left to right."""
    hops: list[Hop | Malformed] = []
    for item in value.split(","):
        item = item.strip(" \t")
        if not item:
            continue
        try:
            hops.append(Hop(parse_node(item.strip('"'), bare_ipv6=True)))
        except Malformed as exc:
            hops.append(exc)
    return hops


# ------------------------------------------------------------------ resolving
@dataclass(frozen=True, slots=True)
class ProxyPolicy:
    """``http.trusted_proxies`` and ``http.forwarded_header``, applied to one request."""

    trusted: tuple[Network, ...] = ()
    header: str = XFF

    @classmethod
    def of(cls, trusted_proxies: Iterable[str], forwarded_header: str = XFF) -> ProxyPolicy:
        if forwarded_header not in HEADER_FAMILIES:
            raise ValueError(f"forwarded_header must be one of {HEADER_FAMILIES}")
        return cls(tuple(parse_networks(trusted_proxies)), forwarded_header)

    def trusts(self, ip: str | Address | None) -> bool:
        address = plain_address(ip) if isinstance(ip, str) else ip
        return address is not None and any(address in net for net in self.trusted)

    def resolve(self, peer_ip: str, scheme_secure: bool, headers: Mapping[str, str]) -> ClientInfo:
        """The client of a request from ``peer_ip`` (over TLS: ``scheme_secure``) whose
        lower-cased ``headers`` have repeated lines joined with ", "."""
        if not self.trusts(peer_ip):
            proxied = any(name in headers for name in FORWARDING_HEADERS)
            return ClientInfo(peer_ip, scheme_secure, proxied=proxied)
        chain = headers.get(self.header)
        if self.header == XFF:
            proto = headers.get("x-forwarded-proto")
            hops = xff_hops(chain) if chain is not None else []
        else:
            proto = None
            hops = forwarded_hops(chain) if chain is not None else []
        if chain is None and proto is None:
            # the trusted peer forwarded nothing: it is its own client (still no exemption)
            return ClientInfo(peer_ip, scheme_secure, proxied=True)
        try:
            client = self._walk(hops)
        except Malformed as exc:
            return ClientInfo(peer_ip, False, proxied=True, problem=f"{self.header}: {exc}")
        if self.header == XFF:
            secure = _all_secure(proto)
        else:
            secure = client is not None and (client.proto or "").lower() in _SECURE_PROTOS
        address = client.address if client is not None else None
        ip = str(address) if address is not None else peer_ip
        return ClientInfo(ip, secure, proxied=True)

    def _walk(self, hops: list[Hop | Malformed]) -> Hop | None:
        """The hop that names the client: the right-most one whose address is not a
        trusted proxy (or the left-most when all are); None for an empty list."""
        found: Hop | None = None
        for hop in reversed(hops):
            if isinstance(hop, Malformed):
                raise hop
            found = hop
            if hop.address is None or not self.trusts(hop.address):
                break
        return found


def _all_secure(proto: str | None) -> bool:
    """X-Forwarded-Proto: HTTPS only if every hop that wrote one says so."""
    if not proto:
        return False
    values = [v.strip(" \t").lower() for v in proto.split(",") if v.strip(" \t")]
    return bool(values) and all(v in _SECURE_PROTOS for v in values)
