"""SCRAM-SHA-1/-256 and PLAIN message parsing (xmppd/stream/scram.py, sasl.py).

The input is a SASL conversation: which mechanism, then client messages. Some are raw
fuzz bytes; one form is a client-final message computed properly from the fuzzed
client-first (so the fuzzer reaches the proof check) and then optionally damaged.

Invariants:
- every step is a defined step type; a failure carries an RFC 6120 §6.5 condition;
- SCRAM succeeds only when the proof was computed with the real password and not damaged,
  and then for the right user with a server signature that verifies;
- PLAIN hands on exactly the authcid and password of a well-formed payload.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import atheris

from xmppd.auth.base import Identity
from xmppd.auth.scram import derive_scram, hash_digest
from xmppd.stream.sasl import (
    Challenge,
    Failure,
    NeedPassword,
    NeedScramCredentials,
    PlainMechanism,
    Success,
)
from xmppd.stream.scram import ScramSha1, ScramSha256

SASL_CONDITIONS = {
    "aborted", "account-disabled", "credentials-expired", "encryption-required",
    "incorrect-encoding", "invalid-authzid", "invalid-mechanism", "malformed-request",
    "mechanism-too-weak", "not-authorized", "temporary-auth-failure",
}  # fmt: skip
USER, PASSWORD = "juliet", "r0meo & balcony"
CREDS = {
    h: derive_scram(PASSWORD, h, salt=b"0123456789abcdef", iterations=2) for h in ("sha1", "sha256")
}


def check(step: object) -> None:
    assert isinstance(step, Challenge | Failure | NeedPassword | NeedScramCredentials | Success)
    if isinstance(step, Failure):
        assert step.condition in SASL_CONDITIONS, step.condition


def plain(fdp: atheris.FuzzedDataProvider) -> None:
    data = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300))
    step = PlainMechanism().start(data if fdp.ConsumeBool() else None)
    check(step)
    if isinstance(step, NeedPassword):
        parts = data.split(b"\x00")
        assert len(parts) == 3
        assert step.authcid == parts[1].decode() and step.password == parts[2].decode()
        assert step.authcid and step.password


def proof_for(hash_name: str, first_bare: str, server_first: str, cbind: str) -> str:
    salted = hashlib.pbkdf2_hmac(hash_name, PASSWORD.encode(), b"0123456789abcdef", 2)
    client_key = hmac.digest(salted, b"Client Key", hash_name)
    nonce = server_first.split(",")[0][2:]
    without_proof = f"c={cbind},r={nonce}"
    message = ",".join((first_bare, server_first, without_proof)).encode()
    signature = hmac.digest(hash_digest(hash_name, client_key), message, hash_name)
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    return f"{without_proof},p={base64.b64encode(proof).decode()}"


def meaning(final: bytes) -> tuple[bytes, bytes] | None:
    """What a client-final says: base64 may spell the same proof in more than one way
    (the unused low bits of its last character), which is not a forgery."""
    head, _, proof = final.rpartition(b",p=")
    try:
        return head, base64.b64decode(proof, validate=True)
    except ValueError:
        return None


def scram(fdp: atheris.FuzzedDataProvider) -> None:
    mech = (ScramSha1 if fdp.ConsumeBool() else ScramSha256)(
        nonce_factory=lambda: "servernonce", domain="example.com", fake_iterations=2
    )
    if fdp.ConsumeBool():
        first = (
            b"n,,"
            + (b"n=juliet,r=" if fdp.ConsumeBool() else b"")
            + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 80))
        )
    else:
        first = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 120))
    step = mech.start(first)
    check(step)
    forged = True
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        if isinstance(step, NeedScramCredentials):
            assert step.hash_name == mech.hash_name
            found = (Identity(USER), CREDS[mech.hash_name]) if step.username == USER else None
            step = mech.credentials(found if fdp.ConsumeBool() else None)  # None: unknown user
        elif isinstance(step, Challenge) and step.data.startswith(b"r=") and fdp.ConsumeBool():
            text = first.decode("utf-8", "replace")
            gs2, _, bare = text.partition(",")
            gs2 = gs2 + "," + bare.partition(",")[0] + ","
            bare = text[len(gs2) :]
            final = proof_for(
                mech.hash_name, bare, step.data.decode(), base64.b64encode(gs2.encode()).decode()
            ).encode()
            good = final
            cut = fdp.ConsumeIntInRange(0, len(final) + 3)
            if cut < len(final) and fdp.ConsumeBool():
                final = final[:cut] + bytes([final[cut] ^ 1]) + final[cut + 1 :]
            elif cut < len(final):
                final = final[:cut]
            forged = meaning(final) != meaning(good)
            step = mech.respond(final)
        else:
            step = mech.respond(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 160)))
        check(step)
        if isinstance(step, Success):
            assert not forged, "SCRAM accepted a proof that was not made with the password"
            assert step.identity == Identity(USER)
            assert step.additional_data.startswith(b"v=")
        if isinstance(step, Failure | Success):
            # After the end, nothing more can succeed.
            assert not isinstance(mech.respond(b"c=biws,r=x,p=AAAA"), Success)
            return


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeIntInRange(0, 3) == 0:
        plain(fdp)
    else:
        scram(fdp)
