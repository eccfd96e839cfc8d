"""The phpBB password hash verifiers (xmppd/auth/phpbb_hashes.py, phpass.py).

Invariants:
- any stored string and any password give ``True`` or ``False``, never an exception
  (a corrupt ``user_password`` column must not crash a login);
- a hash made for a password (bcrypt ``$2y$``/``$2a$``, argon2, phpass ``$H$``/``$P$``,
  phpBB 2 md5) verifies that password and no other, with PHP's 72-byte bcrypt cut;
- ``hash_scheme`` names one of the schemes.

Costs come from the stored hash (the forum's database, not the client); inputs asking for
an expensive cost are skipped so the fuzzer spends its time on parsing, not on hashing.
"""

from __future__ import annotations

import hashlib
import re

import atheris
import bcrypt
from argon2 import PasswordHasher

from xmppd.auth.phpass import ITOA64, phpass_hash, phpass_verify
from xmppd.auth.phpbb_hashes import hash_scheme, verify_phpbb_hash

SCHEMES = {"argon2", "bcrypt", "phpass", "md5", "unsupported"}
_ARGON2 = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
_COST = re.compile(r"\$2[a-z]\$(\d\d)\$|\$[HP]\$(.)|[mtp]=(\d+)")


def cheap(stored: str) -> bool:
    """Whether verifying ``stored`` costs little (see the module docstring)."""
    for bcrypt_cost, phpass_cost, argon_param in _COST.findall(stored):
        if bcrypt_cost and int(bcrypt_cost) > 5:
            return False
        if phpass_cost and ITOA64.find(phpass_cost) > 10:
            return False
        if argon_param and (len(argon_param) > 4 or int(argon_param) > 64):
            return False
    return True


def made_for(password: str, kind: int, salt: bytes) -> str:
    if kind == 0:
        stored = bcrypt.hashpw(password.encode()[:72], bcrypt.gensalt(4)).decode()
        return ("$2y$", "$2a$", "$2b$")[salt[0] % 3] + stored[4:]
    if kind == 1:
        return _ARGON2.hash(password)
    if kind == 2:
        setting = (
            ("$H$", "$P$")[salt[0] % 2] + ITOA64[7] + "".join(ITOA64[b % 64] for b in salt[:8])
        )
        result = phpass_hash(password, setting.ljust(12, "."))
        assert result is not None and len(result) == 34
        return result
    return hashlib.md5(password.encode()).hexdigest()  # noqa: S324 - phpBB 2 legacy


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 5)
    password = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 100))
    if mode <= 3:
        stored = made_for(password, mode, fdp.ConsumeBytes(8).ljust(8, b"\0"))
        assert verify_phpbb_hash(password, stored), (password, stored)
        other = password + fdp.ConsumeUnicodeNoSurrogates(4) + "x"
        if mode == 0 and len(password.encode()) >= 72:
            assert verify_phpbb_hash(other, stored)  # PHP's bcrypt reads 72 bytes only
        else:
            assert not verify_phpbb_hash(other, stored), (other, stored)
        return
    stored = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
    if mode == 5:  # a prefix the verifiers know, then fuzz
        stored = (
            fdp.PickValueInList(["$2y$04$", "$argon2id$v=19$m=8,t=1,p=1$", "$H$7", "$P$7"]) + stored
        )
    assert hash_scheme(stored) in SCHEMES
    if not cheap(stored):
        return
    result = verify_phpbb_hash(password, stored)
    assert result is True or result is False
    assert phpass_verify(password, stored) in (True, False)
