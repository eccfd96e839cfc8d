"""SASL client mechanisms: PLAIN and SCRAM-SHA-1/-256/-512 (RFC 5802, RFC 7677).

The salted password is cached per (hash, password, salt, iterations), as RFC 5802 section 5.1
allows, so that PBKDF2 runs once per distinct salt and does not dominate the load client.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

_HASHES = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
# Strongest first; the -PLUS variants need channel binding (TLS), which the bench does not use.
SCRAM_PREFERENCE = ("SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1")

_CACHE_MAX = 50_000
# (hash, password, salt, iterations) -> (client_key, stored_key, server_key)
_key_cache: dict[tuple[str, str, bytes, int], tuple[bytes, bytes, bytes]] = {}
stats = {"pbkdf2": 0, "cache_hits": 0}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def plain_initial(user: str, password: str) -> str:
    return b64(f"\0{user}\0{password}".encode())


def _keys(hname: str, password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes, bytes]:
    key = (hname, password, salt, iterations)
    found = _key_cache.get(key)
    if found is not None:
        stats["cache_hits"] += 1
        return found
    stats["pbkdf2"] += 1
    salted = hashlib.pbkdf2_hmac(hname, password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", hname)
    stored_key = hashlib.new(hname, client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", hname)
    if len(_key_cache) >= _CACHE_MAX:
        _key_cache.clear()
    found = (client_key, stored_key, server_key)
    _key_cache[key] = found
    return found


class ScramClient:
    """One SCRAM exchange, client side, without channel binding ("n,,")."""

    def __init__(self, mechanism: str, user: str, password: str) -> None:
        self.hname = _HASHES[mechanism]
        self.password = password
        self.nonce = b64(os.urandom(18))
        name = user.replace("=", "=3D").replace(",", "=2C")
        self.client_first_bare = f"n={name},r={self.nonce}"
        self.server_signature = b""

    def first(self) -> str:
        return b64(("n,," + self.client_first_bare).encode())

    def final(self, challenge_b64: str) -> str:
        server_first = base64.b64decode(challenge_b64).decode()
        attrs = dict(part.split("=", 1) for part in server_first.split(","))
        nonce, salt, iterations = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        if not nonce.startswith(self.nonce):
            raise ValueError("SCRAM: server nonce does not extend ours")
        client_key, stored_key, server_key = _keys(self.hname, self.password, salt, iterations)
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self.client_first_bare},{server_first},{without_proof}".encode()
        signature = hmac.digest(stored_key, auth_message, self.hname)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self.server_signature = hmac.digest(server_key, auth_message, self.hname)
        return b64(f"{without_proof},p={b64(proof)}".encode())

    def verify(self, success_b64: str) -> None:
        if not success_b64:
            return  # some servers send v= in a final challenge instead; not checked then
        final = base64.b64decode(success_b64).decode()
        if final.startswith("v=") and base64.b64decode(final[2:]) != self.server_signature:
            raise ValueError("SCRAM: bad server signature")
