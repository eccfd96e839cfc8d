"""XEP-0115 entity capabilities: the verification string, its hash, and a bounded cache.

A client announces ``<c hash='sha-1' node='…' ver='…'/>`` in its presence; ``ver`` is the
hash of its disco#info (§5.1). The server asks the client once per unknown ``ver``
(disco#info to ``node#ver``), checks that the answer hashes to ``ver`` (§5.4: otherwise
it is not cached, so one lying client cannot poison what others with the same ``ver``
get) and remembers the features by ``(hash, ver)``. Written from the XEP's algorithm and
checked against its own examples (tests/unit/test_pubsub_caps.py).
"""

from __future__ import annotations

import base64
import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from lxml import etree

from xmppd.pubsub.names import DATA

DISCO_INFO = "http://jabber.org/protocol/disco#info"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
#: IANA "Hash Function Textual Names" XEP-0115 §5.1 refers to, as hashlib knows them.
HASHES = {
    "md5": "md5",
    "sha-1": "sha1",
    "sha-224": "sha224",
    "sha-256": "sha256",
    "sha-384": "sha384",
    "sha-512": "sha512",
}


class CapsError(ValueError):
    """A disco#info result that §5.4 says must not be used to verify a ``ver``."""


@dataclass(frozen=True, slots=True)
class Identity:
    category: str
    type: str
    lang: str = ""
    name: str = ""


@dataclass(frozen=True, slots=True)
class DiscoInfo:
    """The parts of a disco#info result that go into the verification string."""

    identities: tuple[Identity, ...]
    features: tuple[str, ...]
    #: (FORM_TYPE, ((var, (values…)), …)) of each XEP-0128 extension form
    forms: tuple[tuple[str, tuple[tuple[str, tuple[str, ...]], ...]], ...] = ()


def verification_string(info: DiscoInfo) -> str:
    """§5.1 steps 1-8: identities, features and extension forms, each sorted, '<'-joined."""
    out: list[str] = []
    for ident in sorted(info.identities, key=lambda i: (i.category, i.type, i.lang, i.name)):
        out.append(f"{ident.category}/{ident.type}/{ident.lang}/{ident.name}<")
    out.extend(f + "<" for f in sorted(info.features))
    for form_type, fields in sorted(info.forms, key=lambda f: f[0]):
        out.append(form_type + "<")
        for var, values in sorted(fields, key=lambda f: f[0]):
            out.append(var + "<")
            out.extend(v + "<" for v in sorted(values))
    return "".join(out)


def caps_hash(algorithm: str, info: DiscoInfo) -> str:
    """§5.1 steps 9-10: the base64 of the hash of the UTF-8 verification string."""
    name = HASHES.get(algorithm)
    if name is None:
        raise CapsError(f"unknown hash {algorithm!r}")
    digest = hashlib.new(name, verification_string(info).encode("utf-8")).digest()
    return base64.b64encode(digest).decode("ascii")


def parse_info(query: etree._Element) -> DiscoInfo:
    """A disco#info ``<query/>`` as :class:`DiscoInfo`, or :class:`CapsError` (§5.4 3.3-3.6).

    Duplicate identities (same category/type/lang/name), duplicate features, two forms of
    one FORM_TYPE, or a FORM_TYPE with more than one value make the result unusable; a
    form without a hidden FORM_TYPE is left out (§5.4 3.6).
    """
    identities = [
        Identity(
            el.get("category", ""), el.get("type", ""), el.get(_XML_LANG, ""), el.get("name", "")
        )
        for el in query.iterfind("{%s}identity" % DISCO_INFO)
    ]
    features = [el.get("var", "") for el in query.iterfind("{%s}feature" % DISCO_INFO)]
    if len(set(identities)) != len(identities):
        raise CapsError("two identities are the same")
    if len(set(features)) != len(features):
        raise CapsError("a feature is listed twice")
    forms: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {}
    for form in query.iterfind("{%s}x" % DATA):
        form_type: str | None = None
        fields: list[tuple[str, tuple[str, ...]]] = []
        for field in form.iterfind("{%s}field" % DATA):
            values = tuple(v.text or "" for v in field.iterfind("{%s}value" % DATA))
            if field.get("var") == "FORM_TYPE":
                if field.get("type") != "hidden":
                    break  # §5.4 3.6: not a FORM_TYPE, so not a form that counts
                if len(values) != 1:
                    raise CapsError("a FORM_TYPE has one value")
                form_type = values[0]
            elif field.get("var"):
                fields.append((field.get("var", ""), values))
        if form_type is None:
            continue
        if form_type in forms:
            raise CapsError(f"two forms of FORM_TYPE {form_type!r}")
        forms[form_type] = tuple(fields)
    return DiscoInfo(tuple(identities), tuple(features), tuple(forms.items()))


def verify(algorithm: str, ver: str, query: etree._Element) -> frozenset[str]:
    """The features of ``query`` if it hashes to ``ver`` with ``algorithm``; else CapsError."""
    info = parse_info(query)
    if caps_hash(algorithm, info) != ver:
        raise CapsError("the disco#info does not hash to the announced ver")
    return frozenset(info.features)


class CapsCache:
    """``(hash, ver)`` -> features, the least recently used forgotten beyond ``size``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._known: OrderedDict[tuple[str, str], frozenset[str]] = OrderedDict()

    def get(self, algorithm: str, ver: str) -> frozenset[str] | None:
        key = (algorithm, ver)
        features = self._known.get(key)
        if features is not None:
            self._known.move_to_end(key)
        return features

    def put(self, algorithm: str, ver: str, features: Iterable[str]) -> frozenset[str]:
        key = (algorithm, ver)
        self._known[key] = found = frozenset(features)
        self._known.move_to_end(key)
        while len(self._known) > self.size:
            self._known.popitem(last=False)
        return found

    def __len__(self) -> int:
        return len(self._known)


def notify_nodes(features: Iterable[str]) -> frozenset[str]:
    """The nodes a client wants notifications of: its ``NODE+notify`` features
    (XEP-0163 §4, "filtered notifications")."""
    return frozenset(f[: -len("+notify")] for f in features if f.endswith("+notify") and len(f) > 7)
