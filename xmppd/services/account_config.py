"""``[vcard]`` and ``[private_storage]``: what an account may keep on the server.

XEP-0054 vCards and XEP-0049 private XML are stored per account in the database; these
sections bound them (a client can store nothing past the limits: ``not-acceptable``) and
say whether a forum member's vCard starts from the forum's profile. Values only, no I/O,
so :mod:`xmppd.config` can gather them (layer 6 of ARCHITECTURE.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from xmppd.settings import ConfigError


@dataclass(slots=True)
class VcardConfig:
    """XEP-0054 vcard-temp (``[vcard]``)."""

    enabled: bool = True
    #: Largest vCard a user may store, in bytes of its serialised XML (``not-acceptable``
    #: beyond, nothing stored). 64 KiB holds a small avatar as BINVAL.
    max_size: int = 65_536
    #: phpBB backend: a member with no stored vCard gets one made from the forum (the
    #: forum username as FN/NICKNAME, the forum avatar as PHOTO).
    from_forum: bool = True
    #: The phpBB directory on this machine (where ``config.php`` is), to read uploaded and
    #: gallery avatars into PHOTO/BINVAL; "" = not on this machine.
    forum_path: str = ""
    #: The forum's public URL (e.g. ``https://forum.example.org``), for PHOTO/EXTVAL when
    #: the avatar file cannot be read here; "" = none.
    forum_url: str = ""
    #: Largest avatar file put into a vCard as BINVAL (bytes); a larger one is left out.
    max_avatar_bytes: int = 49_152
    #: XEP-0398: convert avatars between the vCard PHOTO and XEP-0084 PEP (both ways) and
    #: put the PHOTO's hash in each available presence (needs ``[pep]`` enabled too). The
    #: sizes stay bounded by ``max_size`` here and ``[pep] max_payload_bytes``.
    pep_conversion: bool = True

    def validate(self) -> None:
        if not 1024 <= self.max_size <= 1_048_576:
            raise ConfigError.at("max_size", "1024 to 1048576 bytes")
        if not 0 <= self.max_avatar_bytes < self.max_size:
            raise ConfigError.at("max_avatar_bytes", "0 to less than max_size")
        if self.forum_url and not self.forum_url.startswith(("https://", "http://")):
            raise ConfigError.at("forum_url", "an http(s) URL, or empty")


@dataclass(slots=True)
class PrivateStorageConfig:
    """XEP-0049 private XML storage (``[private_storage]``)."""

    enabled: bool = True
    #: Largest item (the elements of one namespace, serialised) in bytes.
    max_item_size: int = 65_536
    #: Most bytes one account may keep over all its namespaces.
    max_total_size: int = 262_144
    #: Most namespaces one account may keep.
    max_items: int = 64
    #: XEP-0402 §5.3: keep XEP-0048 bookmarks here (``storage:bookmarks``) and XEP-0402
    #: bookmarks in PEP one set, both ways (needs ``[pep]`` on too); at most ``[pep]
    #: max_items`` rooms are converted.
    bookmarks_conversion: bool = True

    def validate(self) -> None:
        if not 1024 <= self.max_item_size <= 1_048_576:
            raise ConfigError.at("max_item_size", "1024 to 1048576 bytes")
        if self.max_total_size < self.max_item_size:
            raise ConfigError.at("max_total_size", "must be at least max_item_size")
        if self.max_items < 1:
            raise ConfigError.at("max_items", "must be at least 1")
