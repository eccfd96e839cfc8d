"""An imported account's password -> the SCRAM key columns of xmppd's ``users`` table.

xmppd stores SCRAM-SHA-1 and SCRAM-SHA-256 keys (RFC 5802 §3, RFC 7677), never a
password. A plain password (ejabberd's default ``auth_password_format: plain``) is
derived into both key sets with xmppd's own SCRAM code. SCRAM keys ejabberd stored are
kept exactly as they were: ejabberd keeps ONE hash per account (``auth_scram_hash``:
sha1 by default, sha256 or sha512), and nothing can derive the other hash's keys
without the password. The missing set is stored empty (iterations 0), which
:meth:`xmppd.storage.Database.get_scram` reports as "no keys for this hash"; how the
server copes with such an account (which mechanisms it offers, PLAIN upgrading the keys)
is :mod:`xmppd.auth.internal`'s docstring. SCRAM-SHA-512 keys cannot be stored: the
account is imported without usable keys and reported, so an administrator sets a new
password (``xmppd user passwd``) rather than the account silently disappearing.
"""

from __future__ import annotations

from typing import Any

from xmppd.auth.scram import DEFAULT_ITERATIONS, derive_scram
from xmppd.migrate.model import Account

__all__ = ["STORED_HASHES", "KeyProblem", "key_columns"]

STORED_HASHES = ("sha1", "sha256")


class KeyProblem(ValueError):
    """Keys that cannot be stored (the row is still written, without usable keys)."""


def _empty(hash_name: str) -> dict[str, Any]:
    return {
        f"{hash_name}_salt": b"",
        f"{hash_name}_iterations": 0,
        f"{hash_name}_stored_key": b"",
        f"{hash_name}_server_key": b"",
    }


def key_columns(account: Account) -> tuple[dict[str, Any], str | None]:
    """The eight key columns for ``account`` and, when the keys are unusable, why."""
    values: dict[str, Any] = {}
    for hash_name in STORED_HASHES:
        values.update(_empty(hash_name))
    if account.password is not None:
        try:
            for hash_name in STORED_HASHES:
                creds = derive_scram(account.password, hash_name, iterations=DEFAULT_ITERATIONS)
                values[f"{hash_name}_salt"] = creds.salt
                values[f"{hash_name}_iterations"] = creds.iterations
                values[f"{hash_name}_stored_key"] = creds.stored_key
                values[f"{hash_name}_server_key"] = creds.server_key
        except ValueError:
            values = {k: v for h in STORED_HASHES for k, v in _empty(h).items()}
            return values, "the password is not a valid PRECIS OpaqueString: set a new one"
        return values, None
    keys = account.scram
    if keys is None:
        return values, "no password and no SCRAM keys: set a new password"
    if keys.hash_name not in STORED_HASHES:
        return values, f"SCRAM-{keys.hash_name.upper()} keys cannot be stored: set a new password"
    if keys.iterations < 1 or not keys.salt or not keys.stored_key or not keys.server_key:
        return values, "incomplete SCRAM keys: set a new password"
    values[f"{keys.hash_name}_salt"] = keys.salt
    values[f"{keys.hash_name}_iterations"] = keys.iterations
    values[f"{keys.hash_name}_stored_key"] = keys.stored_key
    values[f"{keys.hash_name}_server_key"] = keys.server_key
    return values, None
