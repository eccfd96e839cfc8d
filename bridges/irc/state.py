"""What the bridge remembers across rejoins and restarts: the last room message time and
the recent XEP-0359 stanza-ids, so a rejoin with ``<history since=…>`` neither loses what
was said meanwhile nor relays anything twice.

The dedup logic is pure; ``load``/``save`` are the only file I/O (a small JSON file,
written atomically by rename so a crash never leaves half a state).
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from datetime import datetime, timedelta
from pathlib import Path

from bridges.irc.muc import format_stamp, parse_stamp

log = logging.getLogger(__name__)


class RecentIds:
    """A bounded set remembering insertion order; the oldest ids fall out first."""

    def __init__(self, size: int, ids: list[str] | None = None) -> None:
        self.size = max(1, size)
        self._ids: OrderedDict[str, None] = OrderedDict()
        for i in ids or []:
            self.add(i)

    def __contains__(self, stanza_id: object) -> bool:
        return stanza_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, stanza_id: str) -> None:
        self._ids[stanza_id] = None
        self._ids.move_to_end(stanza_id)
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)

    def as_list(self) -> list[str]:
        return list(self._ids)


class RoomState:
    """Last seen stamp + recent ids for one room."""

    def __init__(self, size: int = 500) -> None:
        self.last_stamp: datetime | None = None
        self.ids = RecentIds(size)
        self.dirty = False

    def seen(self, stanza_id: str | None) -> bool:
        return stanza_id is not None and stanza_id in self.ids

    def record(self, stanza_id: str | None, stamp: datetime) -> None:
        """Remember a message as handled (relayed or deliberately skipped)."""
        if stanza_id is not None:
            self.ids.add(stanza_id)
        if self.last_stamp is None or stamp > self.last_stamp:
            self.last_stamp = stamp
        self.dirty = True

    def since(
        self, overlap: float, now: datetime | None = None, max_age: float = 0.0
    ) -> datetime | None:
        """The ``since`` for the next join: a little before the last message we saw, to
        absorb clock skew between bridge and server (the overlap is deduplicated), but
        never more than ``max_age`` seconds before ``now`` (0: no limit), so a bridge that
        was down for a day does not replay the day into the channel."""
        if self.last_stamp is None:
            return None
        since = self.last_stamp - timedelta(seconds=overlap)
        if max_age > 0 and now is not None:
            since = max(since, now - timedelta(seconds=max_age))
        return since

    def to_json(self) -> str:
        return json.dumps(
            {
                "last_stamp": format_stamp(self.last_stamp) if self.last_stamp else None,
                "ids": self.ids.as_list(),
            }
        )

    @classmethod
    def from_json(cls, text: str, size: int = 500) -> RoomState:
        state = cls(size)
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("state file is not a JSON object")
        raw = data.get("last_stamp")
        if isinstance(raw, str):
            state.last_stamp = parse_stamp(raw)
        ids = data.get("ids")
        if isinstance(ids, list):
            for i in ids:
                if isinstance(i, str):
                    state.ids.add(i)
        return state


def load(path: Path | None, size: int) -> RoomState:
    """The saved state, or a fresh one (a missing or broken file is logged, not fatal)."""
    if path is None:
        return RoomState(size)
    try:
        return RoomState.from_json(path.read_text(encoding="utf-8"), size)
    except FileNotFoundError:
        return RoomState(size)
    except (OSError, ValueError) as exc:
        log.warning("event=irc_state_unreadable path=%s error=%s", path, exc)
        return RoomState(size)


def save(path: Path | None, state: RoomState) -> None:
    save_text(path, state.to_json())
    state.dirty = False


def save_text(path: Path | None, text: str) -> None:
    """Write atomically (temp file + rename); a failure is logged, the bridge goes on."""
    if path is None:
        return
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("event=irc_state_save_failed path=%s error=%s", path, exc)
