"""The pure half of XEP-0398: converting between XEP-0084 and XEP-0153 avatars.

XEP-0084 keeps an avatar in two PEP nodes: ``urn:xmpp:avatar:data`` (an item whose id is
the SHA-1 of the image, holding the base64 image) and ``urn:xmpp:avatar:metadata`` (an
item with one ``<info/>`` per form of it: id, bytes, type, optional width/height/url;
an empty ``<metadata/>`` means "no avatar", §3.5). XEP-0153 keeps it as the vCard's
``PHOTO`` (``TYPE`` + ``BINVAL``) and announces the SHA-1 of the image in every available
presence (``<x xmlns='vcard-temp:x:update'><photo>hash</photo></x>``). No I/O here: the
service (:mod:`xmppd.services.avatar_sync`) reads and writes the nodes and the vCard.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import struct
from dataclasses import dataclass

from lxml import etree

DATA_NODE = "urn:xmpp:avatar:data"
METADATA_NODE = "urn:xmpp:avatar:metadata"
VCARD_NS = "vcard-temp"
UPDATE_NS = "vcard-temp:x:update"
#: XEP-0398 §2: the feature an account advertises when the server converts.
CONVERSION_FEATURE = "urn:xmpp:pep-vcard-conversion:0"

_V = "{%s}" % VCARD_NS


class AvatarError(ValueError):
    """An avatar that cannot be converted (bad base64, no type, hash mismatch)."""


@dataclass(frozen=True, slots=True)
class Photo:
    """One avatar image: its media type and bytes."""

    mime: str
    data: bytes

    @property
    def sha1(self) -> str:
        """XEP-0084 §4.2.1 / XEP-0153: the hex SHA-1 of the image bytes is its id."""
        return hashlib.sha1(self.data).hexdigest()  # noqa: S324 - the XEPs' id, not security


@dataclass(frozen=True, slots=True)
class Info:
    """One ``<info/>`` of a metadata item (XEP-0084 §4.2.1)."""

    item_id: str
    mime: str
    size: int


def decode_base64(text: str | None) -> bytes:
    """The bytes of a BINVAL or ``<data/>`` (line feeds allowed: XEP-0084 §4.1 says they
    MUST be accepted); :class:`AvatarError` if it is not base64."""
    compact = "".join((text or "").split())
    if not compact:
        raise AvatarError("no image data")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise AvatarError("the image data is not base64") from None


def photo_of(vcard: etree._Element) -> Photo | None:
    """The vCard's PHOTO as TYPE + BINVAL (XEP-0153 §3.1); None when there is none or it
    is only an EXTVAL (no bytes to hash); :class:`AvatarError` when BINVAL is bad."""
    photo = vcard.find(_V + "PHOTO")
    if photo is None:
        return None
    binval = photo.find(_V + "BINVAL")
    if binval is None:
        return None
    mime = (photo.findtext(_V + "TYPE") or "").strip()
    if not mime:
        raise AvatarError("a PHOTO needs a TYPE")
    return Photo(mime, decode_base64(binval.text))


def with_photo(vcard: etree._Element, photo: Photo | None) -> etree._Element:
    """A copy of ``vcard`` whose PHOTO is ``photo`` (TYPE + BINVAL), or has none."""
    card = copy.deepcopy(vcard)
    for old in card.findall(_V + "PHOTO"):
        card.remove(old)
    if photo is not None:
        el = etree.SubElement(card, _V + "PHOTO")
        etree.SubElement(el, _V + "TYPE").text = photo.mime
        etree.SubElement(el, _V + "BINVAL").text = base64.b64encode(photo.data).decode("ascii")
    return card


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG or GIF from its header (cheap); None otherwise, which
    XEP-0084 §4.2.1 allows (``width``/``height`` are RECOMMENDED, not required)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return width, height
    return None


def data_payload(photo: Photo) -> etree._Element:
    """``<data xmlns='urn:xmpp:avatar:data'>base64</data>`` (XEP-0084 §4.1)."""
    el = etree.Element("{%s}data" % DATA_NODE, nsmap={None: DATA_NODE})
    el.text = base64.b64encode(photo.data).decode("ascii")
    return el


def metadata_payload(photo: Photo | None) -> etree._Element:
    """``<metadata/>`` with one ``<info/>`` for ``photo`` (XEP-0398 §3.2: "one info
    element", type from the vCard), or empty: the avatar is disabled (XEP-0084 §3.5)."""
    el = etree.Element("{%s}metadata" % METADATA_NODE, nsmap={None: METADATA_NODE})
    if photo is not None:
        info = etree.SubElement(el, "{%s}info" % METADATA_NODE)
        info.set("id", photo.sha1)
        info.set("bytes", str(len(photo.data)))
        info.set("type", photo.mime)
        size = image_size(photo.data)
        if size is not None:
            info.set("width", str(size[0]))
            info.set("height", str(size[1]))
    return el


def pick_info(metadata: etree._Element) -> Info | None:
    """XEP-0398 §3.1: the ``<info/>`` that does not point to an external URL (the first
    such); None for an empty ``<metadata/>`` (avatar disabled); :class:`AvatarError` when
    there are infos but each has a ``url`` or lacks an id or type."""
    if metadata.tag != "{%s}metadata" % METADATA_NODE:
        raise AvatarError("not XEP-0084 metadata")
    infos = metadata.findall("{%s}info" % METADATA_NODE)
    if not infos:
        return None
    for info in infos:
        if info.get("url") is None and info.get("id") and info.get("type"):
            try:
                size = int(info.get("bytes", "0"))
            except ValueError:
                size = 0
            return Info(info.get("id", ""), info.get("type", ""), size)
    raise AvatarError("no info element with data in PEP")


def photo_from_data(info: Info, data: etree._Element) -> Photo:
    """The image an ``<info/>`` names, from its data item; XEP-0398 §3.1 SHOULD: the
    SHA-1 of the bytes must equal the id (:class:`AvatarError` otherwise)."""
    if data.tag != "{%s}data" % DATA_NODE:
        raise AvatarError("not XEP-0084 data")
    photo = Photo(info.mime, decode_base64(data.text))
    if photo.sha1 != info.item_id.lower():
        raise AvatarError("the image does not match its id")
    return photo


def stamp_presence(presence: etree._Element, photo_hash: str) -> bool:
    """XEP-0398 §4: put ``photo_hash`` in an available presence, in place.

    A presence with an empty ``<photo/>`` is the client saying "not ready / no avatar":
    left alone. An ``<x/>`` without ``<photo/>`` is overwritten; a different hash is
    overwritten too (the MAY: the server knows the stored avatar). Returns whether the
    presence changed.
    """
    x = presence.find("{%s}x" % UPDATE_NS)
    if x is not None:
        photo = x.find("{%s}photo" % UPDATE_NS)
        if photo is not None and not (photo.text or "").strip():
            return False
        if photo is not None and photo.text == photo_hash:
            return False
        presence.remove(x)
    x = etree.SubElement(presence, "{%s}x" % UPDATE_NS, nsmap={None: UPDATE_NS})
    etree.SubElement(x, "{%s}photo" % UPDATE_NS).text = photo_hash
    return True
