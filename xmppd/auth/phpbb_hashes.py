"""Verify the password hashes a phpBB 3.x ``users.user_password`` column really holds.

phpBB 3.3's passwords manager picks a driver by the hash's ``$prefix$``. What stock
installs store, and what this module accepts:

- ``$argon2id$`` / ``$argon2i$`` — PHP ``password_hash`` (3.3 default when PHP has it);
  verified with argon2-cffi, which reads the cost parameters from the hash.
- ``$2y$`` (3.1+ default) and ``$2a$`` (older PHP) — bcrypt. PHP's ``$2y$`` and
  ``$2a$`` (since PHP 5.3.7) compute exactly what ``$2b$`` computes, so they are mapped
  to ``$2b$`` for the bcrypt library. PHP silently uses only the first 72 bytes of the
  password; the bcrypt library refuses longer input, so we cut it the same way.
  ``$2x$`` (the pre-5.3.7 buggy variant) is refused.
- ``$H$`` (phpBB 3.0) and ``$P$`` (phpass/WordPress) — see :mod:`xmppd.auth.phpass`.
- 32 lowercase hex digits — an unconverted phpBB 2 ``md5(password)``; phpBB still
  accepts these (and rehashes on the next forum login), so we do too.

Refused, and reported as ``unsupported``: ``$CP$`` (passwords of boards converted from
other software: phpBB itself cannot check them without the converter's code, and sends
the user through a reset) and the "combined" ``$H\\2y$…`` form, which only phpBB's test
suite and extensions create.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Literal

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from xmppd.auth.phpass import PREFIXES as PHPASS_PREFIXES
from xmppd.auth.phpass import phpass_verify

HashScheme = Literal["argon2", "bcrypt", "phpass", "md5", "unsupported"]

_MD5_HEX = re.compile(r"[0-9a-f]{32}")
_BCRYPT = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")
_BCRYPT_MAX_BYTES = 72
_argon2 = PasswordHasher()


def hash_scheme(stored: str) -> HashScheme:
    """Name the scheme of a stored hash (for choosing a verifier and for logs)."""
    if stored.startswith(("$argon2id$", "$argon2i$")):
        return "argon2"
    if _BCRYPT.fullmatch(stored):
        return "bcrypt"
    if stored[:3] in PHPASS_PREFIXES:
        return "phpass"
    if _MD5_HEX.fullmatch(stored):
        return "md5"
    return "unsupported"


def _bcrypt_verify(password: str, stored: str) -> bool:
    secret = password.encode("utf-8")[:_BCRYPT_MAX_BYTES]
    normalised = ("$2b$" + stored[4:]).encode("ascii")
    try:
        return bcrypt.checkpw(secret, normalised)
    except ValueError:
        return False


def _argon2_verify(password: str, stored: str) -> bool:
    try:
        return _argon2.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _md5_verify(password: str, stored: str) -> bool:
    computed = hashlib.md5(password.encode("utf-8")).hexdigest()  # noqa: S324 - phpBB 2 legacy
    return hmac.compare_digest(computed.encode("ascii"), stored.encode("ascii"))


def verify_phpbb_hash(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` under the rules phpBB 3.3 applies.

    CPU heavy for bcrypt/argon2/phpass by design: call it from a worker thread.
    """
    scheme = hash_scheme(stored)
    if scheme == "argon2":
        return _argon2_verify(password, stored)
    if scheme == "bcrypt":
        return _bcrypt_verify(password, stored)
    if scheme == "phpass":
        return phpass_verify(password, stored)
    if scheme == "md5":
        return _md5_verify(password, stored)
    return False
