"""The pure XEP-0398 conversions (:mod:`xmppd.pubsub.avatar`)."""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib

import pytest
from lxml import etree

from xmppd.pubsub import avatar
from xmppd.pubsub.avatar import AvatarError, Info, Photo

V = "{vcard-temp}"
META = "{urn:xmpp:avatar:metadata}"


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()  # noqa: S324 - the XEP's id


def png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
    )


def vcard(photo: str = "") -> etree._Element:
    return etree.fromstring(f"<vCard xmlns='vcard-temp'><FN>Al</FN>{photo}</vCard>")


def test_photo_of_reads_type_and_binval_with_line_breaks() -> None:
    data = png(3, 4)
    text = base64.b64encode(data).decode()
    wrapped = "\n".join(text[i : i + 10] for i in range(0, len(text), 10))
    card = vcard(f"<PHOTO><TYPE>image/png</TYPE><BINVAL>{wrapped}</BINVAL></PHOTO>")
    photo = avatar.photo_of(card)
    assert photo == Photo("image/png", data)
    assert photo.sha1 == _sha1(data)


@pytest.mark.parametrize(
    "inner",
    [
        "<PHOTO><TYPE>image/png</TYPE><BINVAL>not*base64!</BINVAL></PHOTO>",
        "<PHOTO><TYPE>image/png</TYPE><BINVAL>   </BINVAL></PHOTO>",
        "<PHOTO><BINVAL>aGVsbG8=</BINVAL></PHOTO>",
    ],
)
def test_bad_photos_are_refused(inner: str) -> None:
    with pytest.raises(AvatarError):
        avatar.photo_of(vcard(inner))


def test_no_photo_or_extval_only_is_none() -> None:
    assert avatar.photo_of(vcard()) is None
    assert avatar.photo_of(vcard("<PHOTO><EXTVAL>https://x/a.png</EXTVAL></PHOTO>")) is None


def test_with_photo_replaces_and_removes_keeping_other_fields() -> None:
    old = vcard("<PHOTO><EXTVAL>https://x/a.png</EXTVAL></PHOTO>")
    new = avatar.with_photo(old, Photo("image/gif", b"GIF89a\x01\x00\x01\x00"))
    assert new.findtext(V + "FN") == "Al"
    assert len(new.findall(V + "PHOTO")) == 1
    assert new.findtext(f"{V}PHOTO/{V}TYPE") == "image/gif"
    assert avatar.photo_of(new) == Photo("image/gif", b"GIF89a\x01\x00\x01\x00")
    assert old.find(f"{V}PHOTO/{V}EXTVAL") is not None  # the original is untouched
    assert avatar.with_photo(new, None).find(V + "PHOTO") is None


def test_metadata_for_a_png_has_id_bytes_type_and_size() -> None:
    data = png(64, 32)
    info = avatar.metadata_payload(Photo("image/png", data)).find(META + "info")
    assert info is not None
    assert info.get("id") == _sha1(data)
    assert info.get("bytes") == str(len(data))
    assert (info.get("type"), info.get("width"), info.get("height")) == ("image/png", "64", "32")


def test_metadata_for_an_unknown_format_omits_the_size_and_none_is_empty() -> None:
    info = avatar.metadata_payload(Photo("image/jpeg", b"\xff\xd8rest")).find(META + "info")
    assert info is not None and info.get("width") is None and info.get("height") is None
    assert len(avatar.metadata_payload(None)) == 0


def test_pick_info_skips_urls_and_empty_metadata_is_none() -> None:
    meta = etree.fromstring(
        "<metadata xmlns='urn:xmpp:avatar:metadata'>"
        "<info id='aa' bytes='9' type='image/png' url='https://x/a.png'/>"
        "<info id='bb' bytes='12' type='image/png'/></metadata>"
    )
    assert avatar.pick_info(meta) == Info("bb", "image/png", 12)
    assert (
        avatar.pick_info(etree.fromstring("<metadata xmlns='urn:xmpp:avatar:metadata'/>")) is None
    )
    only_url = etree.fromstring(
        "<metadata xmlns='urn:xmpp:avatar:metadata'>"
        "<info id='aa' bytes='9' type='image/png' url='https://x/a.png'/></metadata>"
    )
    with pytest.raises(AvatarError):
        avatar.pick_info(only_url)
    with pytest.raises(AvatarError):
        avatar.pick_info(etree.fromstring("<other xmlns='urn:x'/>"))


def test_photo_from_data_checks_the_hash() -> None:
    data = png(1, 1)
    good = avatar.data_payload(Photo("image/png", data))
    info = Info(_sha1(data), "image/png", len(data))
    assert avatar.photo_from_data(info, good).data == data
    with pytest.raises(AvatarError):
        avatar.photo_from_data(Info("0" * 40, "image/png", len(data)), good)
    bad = etree.fromstring("<data xmlns='urn:xmpp:avatar:data'>%%%</data>")
    with pytest.raises(AvatarError):
        avatar.photo_from_data(info, bad)


def _photo(pres: etree._Element) -> list[str | None]:
    return [p.text for p in pres.iter("{vcard-temp:x:update}photo")]


def test_stamp_adds_overwrites_and_respects_an_empty_photo() -> None:
    plain = etree.fromstring("<presence xmlns='jabber:client'/>")
    assert avatar.stamp_presence(plain, "abc") and _photo(plain) == ["abc"]
    empty_x = etree.fromstring(
        "<presence xmlns='jabber:client'><x xmlns='vcard-temp:x:update'/></presence>"
    )
    assert avatar.stamp_presence(empty_x, "abc") and _photo(empty_x) == ["abc"]
    other = etree.fromstring(
        "<presence xmlns='jabber:client'><x xmlns='vcard-temp:x:update'>"
        "<photo>old</photo></x></presence>"
    )
    assert avatar.stamp_presence(other, "abc") and _photo(other) == ["abc"]
    not_ready = etree.fromstring(
        "<presence xmlns='jabber:client'><x xmlns='vcard-temp:x:update'><photo/></x></presence>"
    )
    assert not avatar.stamp_presence(not_ready, "abc") and _photo(not_ready) == [None]
    assert not avatar.stamp_presence(other, "abc") and _photo(other) == ["abc"]
