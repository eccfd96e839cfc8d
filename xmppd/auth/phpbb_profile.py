"""A forum member's public profile for their vCard: the username and the avatar.

With the phpBB backend a member who never set a vCard gets one made from the forum
(``[vcard] from_forum``, :mod:`xmppd.services.vcard`). This module finds the member by JID
localpart (the same rule as logins, :func:`~xmppd.auth.phpbb_names.forum_localpart`) and
works out where the forum keeps the avatar, from ``user_avatar``/``user_avatar_type`` and
the board's avatar settings, as phpBB 3.x's avatar drivers do:

- ``avatar.driver.upload`` (3.0: ``1``): ``<avatar_path>/<avatar_salt>_<user_id>.<ext>``
  under the forum's directory, served by ``download/file.php?avatar=<user_avatar>``;
- ``avatar.driver.local`` (3.0: ``3``): ``<avatar_gallery_path>/<user_avatar>``;
- ``avatar.driver.remote`` (3.0: ``2``): ``user_avatar`` is the image's URL;
- ``avatar.driver.gravatar``: left out, since ``user_avatar`` holds the member's email
  address and a Gravatar URL is a hash of it (a vCard never carries an email).

Only the username and the avatar columns are selected — never the password hash or the
email. Files are read only from inside the configured avatar directories, only with an
image extension, and only up to ``max_avatar_bytes``; a remote URL is never fetched by
the server (it could point anywhere, e.g. at the server's own network): it is handed to
clients as an EXTVAL.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import trio

from xmppd.auth.phpbb import PhpbbAuthenticator
from xmppd.auth.phpbb_names import clean_username, forum_localpart, name_candidates
from xmppd.auth.phpbb_schema import ANONYMOUS, USER_IGNORE, validate_prefix
from xmppd.jid import JIDError

log = logging.getLogger("xmppd.auth.phpbb")

#: Image types phpBB accepts for avatars, by file extension.
IMAGE_TYPES = {
    "gif": "image/gif",
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
}
UPLOAD = frozenset({"avatar.driver.upload", "1"})
GALLERY = frozenset({"avatar.driver.local", "3"})
REMOTE = frozenset({"avatar.driver.remote", "2"})
#: The board settings avatars depend on; a missing row counts as this value. The
#: ``allow_avatar*`` switches are the board's (ACP "Avatar settings"): off, the forum shows
#: no such avatar, so neither does the vCard.
AVATAR_CONFIG = {
    "avatar_path": "images/avatars/upload",
    "avatar_gallery_path": "images/avatars/gallery",
    "avatar_salt": "",
    "allow_avatar": "1",
    "allow_avatar_upload": "1",
    "allow_avatar_local": "1",
    "allow_avatar_remote": "1",
}
_CACHE_MAX_ENTRIES = 4096
_UPLOAD_NAME = re.compile(r"(\d+)_\d+\.([A-Za-z]+)")


@dataclass(frozen=True, slots=True)
class Avatar:
    """Where a member's avatar is: a file on this machine and/or a URL, and its type."""

    mime: str
    path: Path | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class ForumProfile:
    """What a forum vCard is made of."""

    username: str
    avatar: Avatar | None = None
    #: the avatar file's bytes, when it could be read (BINVAL)
    image: bytes | None = None


def users_table(prefix: str) -> sa.Table:
    """The users columns a profile needs (and no others), for a forum with ``prefix``."""
    return sa.Table(
        f"{validate_prefix(prefix)}users",
        sa.MetaData(),
        sa.Column("user_id", sa.Integer, primary_key=True),
        sa.Column("user_type", sa.SmallInteger),
        sa.Column("username", sa.String(255)),
        sa.Column("username_clean", sa.String(255)),
        sa.Column("user_avatar", sa.String(255)),
        sa.Column("user_avatar_type", sa.String(255)),
        quote=False,
    )


def select_member(
    conn: sa.Connection, users: sa.Table, config: sa.Table, localpart: str
) -> tuple[Any, dict[str, str]] | None:
    """The member whose JID localpart is ``localpart`` (not the guest, not a bot) and the
    board's avatar settings; None if there is no such member."""
    candidates = name_candidates(localpart)
    cleaned = sorted({clean_username(c) for c in candidates} - {""})
    where = [users.c.username.in_(candidates)]
    if cleaned:
        where.append(users.c.username_clean.in_(cleaned))
    rows = conn.execute(sa.select(users).where(sa.or_(*where)).limit(8)).all()
    member = None
    for row in rows:
        if row.user_id == ANONYMOUS or row.user_type == USER_IGNORE:
            continue
        try:
            if forum_localpart(row.username) == localpart:
                member = row
                break
        except JIDError:
            continue
    if member is None:
        return None
    settings = dict(AVATAR_CONFIG)
    query = sa.select(config.c.config_name, config.c.config_value).where(
        config.c.config_name.in_(sorted(AVATAR_CONFIG))
    )
    for name, value in conn.execute(query):
        settings[name] = str(value or "")
    return member, settings


def _inside(root: Path, relative: str) -> Path | None:
    """``root/relative`` if it stays inside ``root`` (no ``..``, no absolute path)."""
    if not relative or relative.startswith(("/", "\\")) or "\0" in relative:
        return None
    base = root.resolve()
    path = (base / relative).resolve()
    return path if path.is_relative_to(base) and path != base else None


def _allowed(settings: Mapping[str, str], switch: str) -> bool:
    return settings.get(switch, "1").strip() not in ("0", "")


def locate_avatar(
    row: Any, settings: Mapping[str, str], forum_path: str, forum_url: str
) -> Avatar | None:
    """Where ``row``'s avatar is (see the module docstring), or None."""
    kind, value = str(row.user_avatar_type or ""), str(row.user_avatar or "")
    if not value or not _allowed(settings, "allow_avatar"):
        return None
    root = Path(forum_path) if forum_path else None
    base_url = forum_url.rstrip("/")
    if kind in UPLOAD and _allowed(settings, "allow_avatar_upload"):
        m = _UPLOAD_NAME.fullmatch(value)
        if m is None or int(m.group(1)) != int(row.user_id):
            return None
        mime = IMAGE_TYPES.get(m.group(2).lower())
        if mime is None:
            return None
        name = f"{settings['avatar_salt']}_{int(row.user_id)}.{m.group(2)}"
        path = None
        if root is not None:
            folder = _inside(root, settings["avatar_path"])
            path = _inside(folder, name) if folder is not None else None
        url = f"{base_url}/download/file.php?avatar={value}" if base_url else None
        return Avatar(mime, path, url) if path or url else None
    if kind in GALLERY and _allowed(settings, "allow_avatar_local"):
        mime = IMAGE_TYPES.get(value.rsplit(".", 1)[-1].lower())
        if mime is None or ".." in value.split("/"):
            return None
        path = None
        if root is not None:
            folder = _inside(root, settings["avatar_gallery_path"])
            path = _inside(folder, value) if folder is not None else None
        gallery = settings["avatar_gallery_path"].strip("/")
        url = f"{base_url}/{gallery}/{value}" if base_url else None
        return Avatar(mime, path, url) if path or url else None
    if (
        kind in REMOTE
        and _allowed(settings, "allow_avatar_remote")
        and value.startswith(("https://", "http://"))
    ):
        mime = IMAGE_TYPES.get(value.rsplit(".", 1)[-1].split("?")[0].lower(), "image/jpeg")
        return Avatar(mime, None, value)
    return None


def read_avatar(avatar: Avatar, max_bytes: int) -> bytes | None:
    """The avatar file's bytes (blocking), or None: no file, unreadable, or too large."""
    if avatar.path is None or max_bytes <= 0:
        return None
    try:
        with avatar.path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        log.info("event=forum_avatar_unreadable error=%s", type(exc).__name__)
        return None
    if len(data) > max_bytes:
        log.info("event=forum_avatar_too_large max_bytes=%d", max_bytes)
        return None
    return data


class ForumProfiles:
    """Forum profiles by JID localpart, read through the phpBB backend's connection (its
    limits and timeout) and kept ``cache_seconds`` (a client fetches every contact's vCard
    when it loads the roster: one forum query per member, not per request)."""

    def __init__(
        self,
        auth: PhpbbAuthenticator,
        *,
        forum_path: str = "",
        forum_url: str = "",
        max_avatar_bytes: int = 49_152,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._auth = auth
        self._users = users_table(auth.config.table_prefix)
        self._forum_path = forum_path
        self._forum_url = forum_url
        self._max_avatar_bytes = max_avatar_bytes
        self._ttl = auth.config.cache_seconds
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, ForumProfile | None]] = OrderedDict()

    async def lookup(self, localpart: str) -> ForumProfile | None:
        """The profile of the member ``localpart``, or None if no member has it. Raises
        ``AuthError('temporary-auth-failure')`` when the forum database does not answer."""
        now = self._clock()
        cached = self._cache.get(localpart)
        if cached is not None and cached[0] > now:
            return cached[1]
        users, config = self._users, self._auth.tables.config
        found = await self._auth.read(lambda conn: select_member(conn, users, config, localpart))
        profile = None
        if found is not None:
            row, settings = found
            avatar = locate_avatar(row, settings, self._forum_path, self._forum_url)
            image = None
            if avatar is not None and avatar.path is not None:
                image = await trio.to_thread.run_sync(read_avatar, avatar, self._max_avatar_bytes)
            profile = ForumProfile(str(row.username), avatar, image)
        self._cache[localpart] = (now + self._ttl, profile)
        self._cache.move_to_end(localpart)
        while len(self._cache) > _CACHE_MAX_ENTRIES:
            self._cache.popitem(last=False)
        return profile

    def forget(self, localpart: str) -> None:
        """Drop the cached profile of ``localpart``."""
        self._cache.pop(localpart, None)
