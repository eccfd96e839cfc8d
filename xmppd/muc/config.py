"""MUC settings, shaped so ``xmppd.config`` can hold them as ``config.muc``.

Every field has a safe default; ``[muc]`` in the TOML file (or ``XMPPD_MUC_*``) overrides.
Rooms listed in ``[[muc.rooms]]`` exist from start-up and are persistent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from xmppd.jid import JID, JIDError
from xmppd.settings import ConfigError


@dataclass(slots=True)
class RoomSeed:
    """A room that exists from start-up (created in the database if missing)."""

    name: str = "sax"
    title: str = ""
    description: str = ""
    public: bool = True
    #: "anyone": real JIDs visible to all (non-anonymous); "moderators": semi-anonymous.
    whois: Literal["anyone", "moderators"] = "anyone"
    moderated: bool = False
    members_only: bool = False
    subject: str = ""

    def validate(self) -> None:
        try:
            JID.make(self.name, "localhost")
        except JIDError as exc:
            raise ConfigError.at("name", str(exc)) from None


def _default_rooms() -> list[RoomSeed]:
    return [RoomSeed()]


@dataclass(slots=True)
class MucConfig:
    enabled: bool = True
    #: Service domain; empty means ``conference.<server.domain>``.
    host: str = ""
    name: str = "Chatrooms"
    rooms: list[RoomSeed] = field(default_factory=_default_rooms)
    #: Local users may create rooms (they become owners).
    allow_room_creation: bool = True
    #: Rooms the service holds at most (creation is refused beyond; configured rooms count).
    max_rooms: int = 200
    #: Rooms one user (other than a site admin) may have created and still existing.
    max_rooms_per_user: int = 10
    #: Rooms one user may create per minute (a token bucket of this size).
    room_creations_per_minute: int = 5
    #: Bare JIDs owning every room, in addition to ``server.admins``.
    admins: list[str] = field(default_factory=list)
    #: History messages sent on join when the client asks for nothing else.
    history_default: int = 20
    #: Messages kept in memory per room (the most a join can get).
    history_max: int = 200
    #: Bytes of history kept in memory per room, each message counted twice (as sent and
    #: its join copy); the oldest go first, and a larger message is only archived.
    history_max_bytes: int = 524_288
    max_nick_length: int = 48
    max_occupants: int = 1000
    #: A user with a registered nick may only join under that nick.
    enforce_registered_nick: bool = False
    #: Users may register a nick in-band (XEP-0045 §7.10).
    allow_nick_registration: bool = True
    #: Nicks may mix scripts (e.g. Latin with Cyrillic); refused by default (TR39 "highly
    #: restrictive"), except a nick registered to the user who uses it.
    allow_mixed_script_nicks: bool = False
    #: Seconds between reloads of the nick registry (changed by the CLI) from the database.
    nick_reload_interval: float = 60.0
    #: With the phpbb backend: seconds between syncs of forum usernames into the nick
    #: registry while serving (the first runs at start-up); 0 disables.
    sync_nicks_interval: float = 3600.0
    #: The periodic sync also releases nicks of members deleted from the forum.
    sync_nicks_prune: bool = False
    #: Token bucket per user and room: ``flood_burst`` messages, refilled at ``flood_rate``/s
    #: (kept across leaving and rejoining).
    flood_burst: int = 30
    flood_rate: float = 5.0
    #: Mediated invitations (§7.8.2) one user may send per room and minute (a token bucket).
    invites_per_minute: int = 10
    #: Archive writes: at most this many per batch, at least every ``archive_flush_interval`` s.
    archive_batch_size: int = 500
    archive_flush_interval: float = 0.25
    #: Durable room messages (issue 15): a persistent room's groupchat message is committed
    #: to the archive before its echo or any copy is sent; messages arriving meanwhile go
    #: in the next commit together (group commit, at most ``archive_batch_size`` writes).
    durable: bool = True
    #: Seconds a durable message may wait for its commit (database down or slow); then
    #: the sender gets ``resource-constraint`` (type wait) and nobody sees the message.
    max_commit_wait: float = 5.0
    #: Message retraction in rooms: by moderators (XEP-0425) and by authors (XEP-0424).
    moderation: bool = True
    #: Characters a moderator's reason for a retraction may have (kept in the tombstone).
    retraction_reason_max: int = 500
    #: Largest MAM page (RSM ``max``).
    mam_max_page: int = 250
    #: Rooms whose recent messages anyone may read over HTTP at ``/chat/history``
    #: (the forum embeds them in its pages). Rooms not listed are never exposed there.
    public_history_rooms: list[str] = field(default_factory=lambda: ["sax"])

    def service_host(self, server_domain: str) -> str:
        return self.host or f"conference.{server_domain}"

    def validate(self) -> None:
        if self.history_default > self.history_max:
            raise ConfigError.at("history_default", "must not exceed muc.history_max")
        if not 1 <= self.max_nick_length <= 1023:
            raise ConfigError.at("max_nick_length", "must be between 1 and 1023")
        for key in ("max_rooms", "max_rooms_per_user", "room_creations_per_minute"):
            if getattr(self, key) < 1:
                raise ConfigError.at(key, "must be at least 1 (allow_room_creation turns it off)")
        if self.history_max_bytes < 0:
            raise ConfigError.at("history_max_bytes", "must not be negative")
        if self.retraction_reason_max < 0:
            raise ConfigError.at("retraction_reason_max", "must not be negative")
        if not 0.05 <= self.max_commit_wait <= 300:
            raise ConfigError.at("max_commit_wait", "must be between 0.05 and 300 seconds")
        if self.invites_per_minute < 0:
            raise ConfigError.at("invites_per_minute", "must not be negative (0: no limit)")


def seed_form(seed: RoomSeed) -> dict[str, list[str]]:
    """A ``[[muc.rooms]]`` entry as the §10.2 form values an owner would submit."""

    def flag(value: bool) -> list[str]:
        return ["1" if value else "0"]

    return {
        "muc#roomconfig_roomname": [seed.title],
        "muc#roomconfig_roomdesc": [seed.description],
        "muc#roomconfig_persistentroom": flag(True),
        "muc#roomconfig_publicroom": flag(seed.public),
        "muc#roomconfig_moderatedroom": flag(seed.moderated),
        "muc#roomconfig_membersonly": flag(seed.members_only),
        "muc#roomconfig_whois": [seed.whois],
    }
