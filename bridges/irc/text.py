"""Text rules between IRC and the room, sans-IO: formatting codes, CTCP ACTION, splitting.

IRC counts bytes (512 per line), XMPP counts characters; a room message of any length and
shape has to become a few IRC lines that are each valid UTF-8 and end at a word boundary
where one exists.
"""

from __future__ import annotations

import re

ACTION_START = "\x01ACTION "
ZWJ = "\u200d"

# mIRC formatting: bold, colour (\x03 fg[,bg], 1-2 digits each), hex colour (\x04), reset,
# monospace, reverse, italics, strikethrough, underline.
_COLOUR = re.compile(r"\x03(?:\d{1,2}(?:,\d{1,2})?)?")
_HEX_COLOUR = re.compile(r"\x04(?:[0-9A-Fa-f]{6}(?:,[0-9A-Fa-f]{6})?)?")
_TOGGLES = re.compile("[\x02\x0f\x11\x16\x1d\x1e\x1f]")
# What XML 1.0 cannot carry at all (C0 controls other than tab/LF/CR, U+FFFE/U+FFFF).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def strip_formatting(text: str) -> str:
    """Remove mIRC colour/bold/italic/… codes, then anything XML cannot carry."""
    text = _COLOUR.sub("", text)
    text = _HEX_COLOUR.sub("", text)
    text = _TOGGLES.sub("", text)
    return _NOT_XML.sub("", text)


def parse_ctcp_action(text: str) -> str | None:
    """The text of a CTCP ACTION (``\\x01ACTION waves\\x01``), or None for anything else."""
    if not text.startswith(ACTION_START):
        return None
    body = text[len(ACTION_START) :]
    return body[:-1] if body.endswith("\x01") else body


def is_ctcp(text: str) -> bool:
    return text.startswith("\x01")


def protect_nick(nick: str) -> str:
    """Insert a zero-width joiner after the first character so the name no longer matches
    anyone's highlight word (IRC clients ping on an exact nick match)."""
    if len(nick) < 2:
        return nick
    return nick[0] + ZWJ + nick[1:]


def utf8_cut(text: str, budget: int) -> int:
    """The largest index ``i`` with ``len(text[:i].encode()) <= budget`` (a character
    boundary, so no UTF-8 sequence is ever torn apart)."""
    used = 0
    for i, ch in enumerate(text):
        n = len(ch.encode("utf-8"))
        if used + n > budget:
            return i
        used += n
    return len(text)


def split_line(text: str, budget: int) -> list[str]:
    """Split one line into pieces of at most ``budget`` UTF-8 bytes, at the last space that
    fits where there is one (the space itself is dropped), else at a character boundary."""
    if budget < 4:
        raise ValueError("budget too small to carry a character")
    pieces: list[str] = []
    rest = text
    while len(rest.encode("utf-8")) > budget:
        cut = utf8_cut(rest, budget)
        space = rest.rfind(" ", 0, cut + 1)
        if space > 0:
            pieces.append(rest[:space].rstrip(" "))
            rest = rest[space + 1 :].lstrip(" ")
        else:
            pieces.append(rest[:cut])
            rest = rest[cut:]
    if rest or not pieces:
        pieces.append(rest)
    return pieces


def split_message(text: str, budget: int, max_lines: int) -> list[str]:
    """All IRC lines for one (possibly multi-line) message, each within ``budget`` bytes.

    Blank lines are skipped. Past ``max_lines`` lines the rest is replaced by one notice
    "(… N more lines)", N counting the IRC lines left out, so a paste never floods the
    channel and nobody is left wondering whether something was cut.
    """
    out: list[str] = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        out.extend(split_line(raw.rstrip(), budget))
    if max_lines > 0 and len(out) > max_lines:
        more = len(out) - (max_lines - 1)
        out = [*out[: max_lines - 1], f"(… {more} more lines)"]
    return out


def privmsg_budget(own_nick: str, channel: str, user_len: int = 10, host_len: int = 63) -> int:
    """Bytes left for the text of ``PRIVMSG channel :text`` once the server has prefixed it
    with our ``:nick!user@host`` for the other clients (worst case user/host lengths)."""
    overhead = f":{own_nick}!{'u' * user_len}@{'h' * host_len} PRIVMSG {channel} :\r\n"
    return 512 - len(overhead.encode("utf-8"))
