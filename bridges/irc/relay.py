"""How one side's events read on the other side, sans-IO (one bot per side, like saxjax).

IRC users appear in the room only inside the bot's text (``<nick> text``), never as
occupants, so no IRC user can ever show up under a forum member's reserved nick; room
users appear on IRC the same way.
"""

from __future__ import annotations

from bridges.irc.text import protect_nick, split_message, strip_formatting

ME = "/me "


class Formatter:
    def __init__(self, nick_protection: bool, max_lines: int) -> None:
        self.nick_protection = nick_protection
        self.max_lines = max_lines

    def _nick(self, nick: str) -> str:
        # A nick comes from the IRC server's prefix: drop what no room stanza can carry.
        nick = strip_formatting(nick)
        return protect_nick(nick) if self.nick_protection else nick

    # ---------------------------------------------------------------- IRC -> room
    def irc_message(self, nick: str, text: str, action: bool) -> str | None:
        """Room body for a channel message; None if nothing is left after stripping."""
        clean = strip_formatting(text).strip()
        if not clean:
            return None
        if action:
            return f"{ME}{self._nick(nick)} {clean}"
        return f"<{self._nick(nick)}> {clean}"

    def irc_join(self, nick: str, channel: str) -> str:
        return f"*** {self._nick(nick)} joined {channel}"

    def irc_part(self, nick: str, channel: str, reason: str) -> str:
        why = strip_formatting(reason).strip()
        return f"*** {self._nick(nick)} left {channel}" + (f" ({why})" if why else "")

    def irc_quit(self, nick: str, reason: str) -> str:
        why = strip_formatting(reason).strip()
        return f"*** {self._nick(nick)} quit" + (f" ({why})" if why else "")

    def irc_nick(self, old: str, new: str) -> str:
        return f"*** {self._nick(old)} is now known as {self._nick(new)}"

    def irc_kick(self, nick: str, by: str, reason: str) -> str:
        why = strip_formatting(reason).strip()
        return f"*** {self._nick(nick)} was kicked by {self._nick(by)}" + (
            f" ({why})" if why else ""
        )

    # ---------------------------------------------------------------- room -> IRC
    def room_message(self, nick: str, body: str, budget: int) -> list[str]:
        """PRIVMSG texts (already split to ``budget`` bytes each) for a room message.

        ``/me`` becomes a CTCP ACTION; every line carries the speaker so a split or
        multi-line message never reads as someone else's.
        """
        who = self._nick(nick)
        if body.startswith(ME):
            head = f"{who} "
            overhead = len(b"\x01ACTION \x01")
            parts = split_message(
                body[len(ME) :], budget - overhead - len(head.encode()), self.max_lines
            )
            return [f"\x01ACTION {head}{p}\x01" for p in parts]
        head = f"<{who}> "
        parts = split_message(body, budget - len(head.encode()), self.max_lines)
        return [head + p for p in parts]

    def room_join(self, nick: str) -> str:
        return f"*** {self._nick(nick)} joined the room"

    def room_part(self, nick: str) -> str:
        return f"*** {self._nick(nick)} left the room"
