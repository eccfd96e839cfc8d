"""phpBB 3.0 / phpass "portable" password hashes (``$H$`` and ``$P$``).

Why this is hand-rolled: the algorithm (Openwall's phpass portable hash, public domain)
has no well-kept Python library any more, and forums upgraded from phpBB 3.0 still hold
such hashes for every member who has not logged in since. The scheme is small:

    hash = md5(salt + password); repeat 2**n times: hash = md5(hash + password)
    stored = prefix + itoa64[n] + salt(8) + encode64(hash)   # 34 characters

where ``encode64`` is phpass's own little-endian base64 over the alphabet ``./0-9A-Za-z``.
Only verification is offered: xmppd never writes forum passwords.
"""

from __future__ import annotations

import hashlib
import hmac

ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PREFIXES = ("$H$", "$P$")
_HASH_LENGTH = 34
_MIN_LOG2, _MAX_LOG2 = 7, 30  # the bounds phpBB's salted_md5 driver accepts


def encode64(data: bytes) -> str:
    """phpass's base64: 6-bit groups taken little-endian from 3-byte blocks, no padding."""
    out: list[str] = []
    for start in range(0, len(data), 3):
        block = data[start : start + 3]
        value = int.from_bytes(block, "little")
        for _ in range(len(block) + 1):
            out.append(ITOA64[value & 0x3F])
            value >>= 6
    return "".join(out)


def phpass_hash(password: str, setting: str) -> str | None:
    """Hash ``password`` with the prefix, cost and salt in ``setting`` (first 12 chars).

    Returns ``None`` when ``setting`` is not a valid phpass setting, so a corrupt stored
    hash can never verify.
    """
    if len(setting) < 12 or not setting.isascii() or setting[:3] not in PREFIXES:
        return None
    count_log2 = ITOA64.find(setting[3])
    if not _MIN_LOG2 <= count_log2 <= _MAX_LOG2:
        return None
    salt = setting[4:12].encode("ascii")
    secret = password.encode("utf-8")
    digest = hashlib.md5(salt + secret).digest()  # noqa: S324 - phpass is MD5 by definition
    for _ in range(1 << count_log2):
        digest = hashlib.md5(digest + secret).digest()  # noqa: S324
    return setting[:12] + encode64(digest)


def phpass_verify(password: str, stored: str) -> bool:
    """Whether ``password`` matches a ``$H$``/``$P$`` hash (constant-time comparison)."""
    if len(stored) != _HASH_LENGTH:
        return False
    computed = phpass_hash(password, stored)
    if computed is None:
        return False
    return hmac.compare_digest(computed.encode("ascii"), stored.encode("ascii"))
