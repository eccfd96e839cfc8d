"""What a site moves from one server to another, neutral of where it came from.

Every source reader (ejabberd's SQL tables, a Mnesia text dump, an XEP-0227 file, xmppd's
own database for ``xmppd export``) yields these records; one writer puts them into xmppd's
storage and one writer turns them into XEP-0227. JIDs are strings as the source had them
(bare unless said otherwise); ``--map-domain`` is applied by the importer, not the readers.
Stanzas stay serialized XML (``str``): the archive may hold millions of them and nothing
here needs their tree.

Records are grouped by :class:`Kind`; each kind is written in its own transaction, in the
order of the enum (accounts before what belongs to them, rooms before their archive).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


class Kind(enum.Enum):
    ACCOUNTS = "accounts"
    ROSTERS = "rosters"
    PENDING_SUBSCRIPTIONS = "pending subscriptions"
    OFFLINE = "offline messages"
    VCARDS = "vcards"
    PRIVATE_XML = "private storage"
    ROOMS = "rooms"
    AFFILIATIONS = "affiliations"
    NICKS = "registered nicks"
    ROOM_ARCHIVE = "room archive"
    ACCOUNT_ARCHIVE = "account archive"


@dataclass(frozen=True, slots=True)
class ScramKeys:
    """One hash's SCRAM credentials (RFC 5802 §3) as the source stored them."""

    hash_name: str  # "sha1", "sha256", "sha512" (hashlib names)
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


@dataclass(frozen=True, slots=True)
class Account:
    """A local account. Exactly one of ``password`` (plain, as ejabberd's plain format
    keeps it) and ``scram`` is set; a password is never printed or logged."""

    jid: str  # bare, user@domain
    password: str | None = field(default=None, repr=False)
    scram: ScramKeys | None = field(default=None, repr=False)
    created_at: datetime | None = None
    #: keys of further hashes for the same password when the source kept several (xmppd
    #: stores SHA-1 and SHA-256; an XEP-0227 file has one <scram-credentials/> per hash)
    more_scram: tuple[ScramKeys, ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True)
class RosterItem:
    owner: str
    contact: str
    name: str = ""
    subscription: str = "none"  # none | to | from | both (RFC 6121 §2.1.2.5)
    ask_out: bool = False  # we asked to see the contact's presence, no answer yet
    pending_in: bool = False  # the contact asked to see ours, no answer yet
    approved: bool = False  # pre-approved (RFC 6121 §3.4)
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PendingSubscription:
    """An inbound subscription request not yet answered, with its stanza (status text)."""

    owner: str
    from_jid: str
    stanza: str


@dataclass(frozen=True, slots=True)
class OfflineMessage:
    owner: str
    stanza: str  # the <message/> as it will be delivered (with its <delay/>)
    stamp: datetime


@dataclass(frozen=True, slots=True)
class VCard:
    owner: str
    xml: str  # the <vCard xmlns="vcard-temp"/> element


@dataclass(frozen=True, slots=True)
class PrivateXml:
    owner: str
    namespace: str
    xml: str  # the stored child element of <query xmlns="jabber:iq:private"/>


@dataclass(frozen=True, slots=True)
class Room:
    """A persistent room: bare room JID plus what an owner configures (XEP-0045 §10.2)."""

    jid: str  # room@conference.domain
    title: str = ""
    description: str = ""
    public: bool = True
    persistent: bool = True
    members_only: bool = False
    moderated: bool = False
    password: str | None = field(default=None, repr=False)
    whois: str = "moderators"  # "anyone" (non-anonymous) | "moderators" (semi-anonymous)
    change_subject: bool = False
    allow_pm: str = "anyone"
    max_occupants: int | None = None
    subject: str = ""
    subject_nick: str = ""
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Affiliation:
    room: str  # room JID
    jid: str  # bare JID (or a domain) the affiliation is for
    affiliation: str  # owner | admin | member | outcast
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RegisteredNick:
    """A nickname registered in a room (XEP-0045 §7.10), or service-wide when ``room`` is
    the MUC service's domain (ejabberd's ``muc_registered`` is per service host)."""

    room: str  # room JID, or the service domain for a service-wide registration
    jid: str
    nick: str


@dataclass(frozen=True, slots=True)
class RoomMessage:
    """A groupchat message of a room's archive; ``stanza_id`` is the id clients know it by
    (XEP-0359 as the room stamped it; ejabberd's archive id, a decimal microsecond time)."""

    room: str
    stanza_id: str
    stamp: datetime  # UTC, naive
    nick: str
    sender: str  # the occupant's real bare JID where known, else ""
    stanza: str  # the <message type="groupchat"/> as the room sent it


@dataclass(frozen=True, slots=True)
class AccountMessage:
    """A one-to-one message of an account's archive (XEP-0313 on the account)."""

    owner: str
    stanza_id: str
    stamp: datetime
    with_jid: str  # the other party, full or bare
    outgoing: bool
    stanza: str


Record = (
    Account
    | RosterItem
    | PendingSubscription
    | OfflineMessage
    | VCard
    | PrivateXml
    | Room
    | Affiliation
    | RegisteredNick
    | RoomMessage
    | AccountMessage
)

KIND_OF: dict[type, Kind] = {
    Account: Kind.ACCOUNTS,
    RosterItem: Kind.ROSTERS,
    PendingSubscription: Kind.PENDING_SUBSCRIPTIONS,
    OfflineMessage: Kind.OFFLINE,
    VCard: Kind.VCARDS,
    PrivateXml: Kind.PRIVATE_XML,
    Room: Kind.ROOMS,
    Affiliation: Kind.AFFILIATIONS,
    RegisteredNick: Kind.NICKS,
    RoomMessage: Kind.ROOM_ARCHIVE,
    AccountMessage: Kind.ACCOUNT_ARCHIVE,
}


@dataclass(frozen=True, slots=True)
class Problem:
    """A row the reader could not turn into a record, or a record the importer refuses
    (a nick that collides after normalisation…): counted and listed, fatal only under
    ``--strict``. ``where`` says how to find it in the source (table and key, line)."""

    kind: Kind | None
    where: str
    text: str


class Source(Protocol):
    """What a reader gives the importer (and the exporter): records kind by kind, in any
    order within a kind, streamed (an archive of millions of rows is never in a list).
    Problems are yielded in place of the rows they are about."""

    #: One line for the dry run's heading: what was read (never a password or a DSN's).
    description: str

    def read(self, kind: Kind) -> Iterator[Record | Problem]: ...

    def estimate(self, kind: Kind) -> int | None:
        """About how many rows ``read(kind)`` will yield (for the progress bar), or None."""
        ...
