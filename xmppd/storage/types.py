"""Values and errors that cross the storage boundary (no SQLAlchemy types leak out)."""

from __future__ import annotations

from dataclasses import dataclass

SUBSCRIPTIONS = frozenset({"none", "to", "from", "both"})


class StorageError(Exception):
    """Base for every error the storage layer raises on purpose."""


class UserExists(StorageError):
    """``create_user`` for a localpart that already has an account."""


class UnknownUser(StorageError):
    """An operation on an account that does not exist."""


class InvalidValue(StorageError, ValueError):
    """A value the schema cannot hold (too long, not normalisable, bad enum)."""


class RosterFull(StorageError):
    """``put_roster_item`` would add an item to a roster that already has its limit."""


@dataclass(frozen=True, slots=True)
class RosterItem:
    """One roster entry as RFC 6121 §2.1.2 describes it; ``jid`` is the contact's bare JID."""

    jid: str
    name: str | None = None
    subscription: str = "none"
    ask_out: bool = False
    pending_in: bool = False
    approved: bool = False
    groups: tuple[str, ...] = ()
