"""The admin socket's wire format: one JSON request, one JSON response, per connection.

A client connects to the UNIX stream socket, writes one JSON object on one line
(``{"command": "kick", "args": {"jid": "alice@example.org"}}`` and a newline, or closes
its writing side instead of the newline), reads one JSON line back and the server
closes. No framing beyond the newline, so any language with UNIX sockets and JSON (the
forum's PHP) can use it. README.md "Operating a running server" documents it.

Pure: no sockets here, so both ends (and the unit tests) share the encoding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

#: Largest request accepted (a password, a room message…), bytes.
MAX_REQUEST = 65536
#: Largest response a client reads (a sessions list of a busy server fits easily).
MAX_RESPONSE = 64 * 1024 * 1024

#: Error codes in responses, and the exit status ``xmppd`` gives each (0 is success).
#: 2: the request itself was wrong (nothing was changed); 1: it could not be carried out.
EXIT_STATUS = {
    "bad-request": 2,  # missing/invalid arguments, a JID or room that does not parse
    "unknown-command": 2,
    "bad-config": 2,  # reload: the configuration does not validate
    "not-found": 1,  # no such user, room, session, nick
    "conflict": 1,  # the user exists, a room needs an owner…
    "not-acceptable": 1,  # the nick registry refuses the nickname
    "not-allowed": 1,  # not possible with this configuration (phpBB accounts, no MUC…)
    "forbidden": 1,  # the connecting uid may not use the admin socket
    "internal-error": 1,
}


class AdminError(Exception):
    """A command that failed; ``code`` is one of :data:`EXIT_STATUS`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code if code in EXIT_STATUS else "internal-error"
        self.message = message


@dataclass(slots=True)
class Request:
    command: str
    args: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        return json.dumps({"command": self.command, "args": self.args}).encode("utf-8") + b"\n"


@dataclass(slots=True)
class Reply:
    """What a command answers: a human line and, for scripts, structured data."""

    message: str = ""
    result: dict[str, Any] = field(default_factory=dict)


def decode_request(data: bytes) -> Request:
    """Parse a request line; :class:`AdminError` ``bad-request`` if it is not one."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise AdminError("bad-request", "the request is not a JSON object") from None
    if not isinstance(doc, dict):
        raise AdminError("bad-request", "the request is not a JSON object")
    command = doc.get("command")
    args = doc.get("args", {})
    if not isinstance(command, str) or not command:
        raise AdminError("bad-request", 'the request has no "command"')
    if not isinstance(args, dict):
        raise AdminError("bad-request", '"args" must be a JSON object')
    return Request(command, args)


def encode_reply(version: str, reply: Reply) -> bytes:
    doc = {"ok": True, "xmppd": version, "message": reply.message, "result": reply.result}
    return json.dumps(doc, ensure_ascii=False).encode("utf-8") + b"\n"


def encode_error(version: str, error: AdminError) -> bytes:
    doc = {"ok": False, "xmppd": version, "error": error.code, "message": error.message}
    return json.dumps(doc, ensure_ascii=False).encode("utf-8") + b"\n"


def decode_response(data: bytes) -> dict[str, Any] | None:
    """The response document, or None when ``data`` is not an xmppd response."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(doc, dict) or "xmppd" not in doc or not isinstance(doc.get("ok"), bool):
        return None
    if not doc["ok"] and doc.get("error") not in EXIT_STATUS:
        doc["error"] = "internal-error"
    return doc


# ----------------------------------------------------------------- argument helpers
def text_arg(args: dict[str, Any], name: str, *, required: bool = True, limit: int = 4096) -> str:
    """A string argument; absent optional ones are ""."""
    value = args.get(name)
    if value is None or value == "":
        if required:
            raise AdminError("bad-request", f'missing argument "{name}"')
        return ""
    if not isinstance(value, str):
        raise AdminError("bad-request", f'argument "{name}" must be a string')
    if len(value) > limit:
        raise AdminError("bad-request", f'argument "{name}" is longer than {limit} characters')
    return value


def bool_arg(args: dict[str, Any], name: str) -> bool:
    value = args.get(name, False)
    if not isinstance(value, bool):
        raise AdminError("bad-request", f'argument "{name}" must be true or false')
    return value


def _xml_char(code: int) -> bool:
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def xml_text(value: str, name: str) -> str:
    """``value`` if XML 1.0 can carry it (a message body, a subject, a reason)."""
    if not all(_xml_char(ord(c)) for c in value):
        raise AdminError("bad-request", f'argument "{name}" contains characters XML cannot carry')
    return value
