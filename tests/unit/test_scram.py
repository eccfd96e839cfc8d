"""SCRAM-SHA-1/-256: RFC test vectors, failure paths, and a real client (slixmpp)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest
from slixmpp.util.sasl import SASLMutualAuthFailed, choose

from xmppd.auth.base import Identity, ScramCredentials
from xmppd.auth.scram import derive_scram, prepare_password
from xmppd.stream.mechanisms import offered_mechanisms
from xmppd.stream.sasl import Challenge, Failure, NeedScramCredentials, Success
from xmppd.stream.scram import ScramSha1, ScramSha256

# RFC 5802 §5 and RFC 7677 §3: user "user", password "pencil".
RFC5802 = {
    "cls": ScramSha1,
    "cnonce": "fyko+d2lbbFgONRv9qkxdawL",
    "snonce": "3rfcNHYJY1ZVvWVs7j",
    "salt": "QSXCR+Q6sek8bf92",
    "proof": "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
    "verifier": "rmF9pqV8S7suAoZWja4dJRkFsKQ=",
}
RFC7677 = {
    "cls": ScramSha256,
    "cnonce": "rOprNGfwEbeRWgbNEkqO",
    "snonce": "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    "salt": "W22ZaJ0SNY7soEsUEjb6gQ==",
    "proof": "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    "verifier": "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
}
USER = Identity("user")


def _creds(vector: dict[str, Any], password: str = "pencil") -> ScramCredentials:
    cls = vector["cls"]
    return derive_scram(password, cls.hash_name, base64.b64decode(vector["salt"]))


def _to_server_first(vector: dict[str, Any], found: Any = "default") -> Any:
    mech = vector["cls"](nonce_factory=lambda: vector["snonce"])
    step = mech.start(f"n,,n=user,r={vector['cnonce']}".encode())
    assert step == NeedScramCredentials("user", vector["cls"].hash_name)
    server_first = mech.credentials((USER, _creds(vector)) if found == "default" else found)
    return mech, server_first


def _final(vector: dict[str, Any], proof: str | None = None, cbind: str = "biws") -> bytes:
    nonce = vector["cnonce"] + vector["snonce"]
    return f"c={cbind},r={nonce},p={proof or vector['proof']}".encode()


@pytest.mark.parametrize("vector", [RFC5802, RFC7677], ids=["sha1", "sha256"])
def test_rfc_vectors_end_to_end(vector: dict[str, Any]) -> None:
    mech, server_first = _to_server_first(vector)
    expected = f"r={vector['cnonce']}{vector['snonce']},s={vector['salt']},i=4096"
    assert server_first == Challenge(expected.encode())
    result = mech.respond(_final(vector))
    assert result == Success(USER, b"v=" + vector["verifier"].encode())
    # The exchange is over: anything more is refused.
    assert isinstance(mech.respond(b"c=biws"), Failure)


def test_derive_scram_matches_rfc5802() -> None:
    creds = _creds(RFC5802)
    salted = hashlib.pbkdf2_hmac("sha1", b"pencil", base64.b64decode(RFC5802["salt"]), 4096)
    client_key = hmac.digest(salted, b"Client Key", "sha1")
    assert creds.stored_key == hashlib.sha1(client_key).digest()  # noqa: S324 (RFC 5802)
    assert creds.server_key == hmac.digest(salted, b"Server Key", "sha1")
    assert creds.iterations == 4096


def test_derive_scram_random_salt_and_iterations() -> None:
    a = derive_scram("pencil", "sha256")
    b = derive_scram("pencil", "sha256", iterations=5000)
    assert len(a.salt) == 16
    assert a.salt != b.salt
    assert b.iterations == 5000
    assert a.stored_key != b.stored_key
    with pytest.raises(ValueError):
        derive_scram("pencil", "sha256", iterations=0)


def test_password_is_prepared_with_opaquestring() -> None:
    salt = b"0123456789abcdef"
    # NBSP maps to space, and decomposed é composes (NFC): same keys as the plain form.
    assert derive_scram("pass\u00a0word", "sha1", salt) == derive_scram("pass word", "sha1", salt)
    assert derive_scram("cafe\u0301", "sha1", salt) == derive_scram("café", "sha1", salt)
    assert prepare_password("pencil") == b"pencil"
    for bad in ("", "bell\x07"):
        with pytest.raises(ValueError):
            derive_scram(bad, "sha1", salt)


@pytest.mark.parametrize("vector", [RFC5802, RFC7677], ids=["sha1", "sha256"])
def test_wrong_password(vector: dict[str, Any]) -> None:
    mech, _ = _to_server_first(vector, (USER, _creds(vector, "pencil2")))
    assert mech.respond(_final(vector)) == Failure("not-authorized")


def test_unknown_user_is_indistinguishable() -> None:
    known, _ = _to_server_first(RFC7677, (USER, derive_scram("x", "sha256")))
    unknown, unknown_first = _to_server_first(RFC7677, None)
    assert isinstance(unknown_first, Challenge)
    fields = dict(f.split("=", 1) for f in unknown_first.data.decode().split(","))
    assert fields["r"] == RFC7677["cnonce"] + RFC7677["snonce"]
    assert len(base64.b64decode(fields["s"])) == 16
    assert fields["i"] == "4096"
    # Same username -> same fake salt (a retry cannot spot a random one), also for
    # another spelling of the same name; another name -> another salt.
    _, again = _to_server_first(RFC7677, None)
    assert again == unknown_first
    other = ScramSha256(nonce_factory=lambda: "n")
    other.start(b"n,,n=USER,r=abc")
    assert b"s=" + fields["s"].encode() in other.credentials(None).data  # type: ignore[union-attr]
    stranger = ScramSha256(nonce_factory=lambda: "n")
    stranger.start(b"n,,n=someone,r=abc")
    assert b"s=" + fields["s"].encode() not in stranger.credentials(None).data  # type: ignore[union-attr]
    # Both end with the very same failure.
    assert unknown.respond(_final(RFC7677)) == known.respond(_final(RFC7677))
    assert unknown.respond(b"") == Failure("malformed-request", "unexpected response")


def test_fake_iterations_follow_configuration() -> None:
    mech = ScramSha1(nonce_factory=lambda: "n", fake_iterations=10000)
    mech.start(b"n,,n=ghost,r=abc")
    assert mech.credentials(None).data.endswith(b",i=10000")  # type: ignore[union-attr]


def test_no_initial_response() -> None:
    mech = ScramSha1(nonce_factory=lambda: RFC5802["snonce"])
    assert mech.start(None) == Challenge(b"")
    assert mech.respond(f"n,,n=user,r={RFC5802['cnonce']}".encode()) == NeedScramCredentials(
        "user", "sha1"
    )
    mech.credentials((USER, _creds(RFC5802)))
    assert isinstance(mech.respond(_final(RFC5802)), Success)


def test_default_server_nonce_is_printable_and_fresh() -> None:
    firsts = []
    for _ in range(2):
        mech = ScramSha256()
        mech.start(b"n,,n=user,r=client")
        step = mech.credentials((USER, derive_scram("p", "sha256")))
        assert isinstance(step, Challenge)
        nonce = step.data.decode().split(",")[0][2:]
        assert nonce.startswith("client") and len(nonce) > len("client") + 16
        assert all(0x21 <= ord(c) <= 0x7E and c != "," for c in nonce)
        firsts.append(nonce)
    assert firsts[0] != firsts[1]


def test_username_with_escapes() -> None:
    mech = ScramSha1()
    assert mech.start(b"n,,n=a=2Cb=3Dc,r=abc") == NeedScramCredentials("a,b=c", "sha1")


@pytest.mark.parametrize(
    "first",
    [
        b"n=user,r=abc",  # no GS2 header
        b"n,n=user,r=abc",  # GS2 header cut short
        b"x,,n=user,r=abc",  # unknown cbind flag
        b"p=tls-unique,,n=user,r=abc",  # channel binding: we did not offer -PLUS
        b"n,,m=ext,n=user,r=abc",  # mandatory extension
        b"n,,n=user",  # no nonce
        b"n,,r=abc,n=user",  # wrong order
        b"n,,n=user,r=",  # empty nonce
        b"n,,n=user,r=ab\x7fc",  # nonce not printable
        b"n,,n=,r=abc",  # empty username
        b"n,,n=us=er,r=abc",  # bare '=' in saslname
        b"n,,n=us=2cer,r=abc",  # escapes are upper case
        b"n,,n=user,r=abc,bogus",  # extension without a name
        b"n,z=x,n=user,r=abc",  # authzid without a=
        b"n,,n=\xff,r=abc",  # not UTF-8
        b"",
    ],
)
def test_malformed_client_first(first: bytes) -> None:
    step = ScramSha256().start(first)
    assert isinstance(step, Failure)
    assert step.condition == "malformed-request"


def test_optional_extension_is_ignored() -> None:
    assert ScramSha1().start(b"n,,n=user,r=abc,x=ext") == NeedScramCredentials("user", "sha1")


@pytest.mark.parametrize(
    ("final", "condition"),
    [
        (b"r=NONCE,p=PROOF", "malformed-request"),  # no c=
        (b"c=biws,r=NONCE", "malformed-request"),  # no proof
        (b"c=biws,p=PROOF,r=NONCE", "malformed-request"),  # proof not last
        (b"c=biws,r=NONCE,p=!!notbase64!!", "malformed-request"),
        (b"c=b!ws,r=NONCE,p=PROOF", "malformed-request"),  # bad base64 in c=
        (b"c=biws,r=NONCE,p=AAAA", "malformed-request"),  # proof of the wrong size
        (b"c=eSws,r=NONCE,p=PROOF", "not-authorized"),  # cbind "y,," but we saw "n,,"
        (b"c=biws,r=fyko+d2lbbFgONRv9qkxdawLXXX,p=PROOF", "not-authorized"),  # nonce
        (b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL,p=PROOF", "not-authorized"),  # no server part
        (b"c=biws,r=NONCE,p=PROOF\xff", "malformed-request"),
    ],
)
def test_bad_client_final(final: bytes, condition: str) -> None:
    mech, _ = _to_server_first(RFC5802)
    final = final.replace(b"NONCE", (RFC5802["cnonce"] + RFC5802["snonce"]).encode())
    final = final.replace(b"PROOF", RFC5802["proof"].encode())
    step = mech.respond(final)
    assert isinstance(step, Failure)
    assert step.condition == condition
    # One failure ends the exchange, even if a valid final follows.
    assert isinstance(mech.respond(_final(RFC5802)), Failure)


def test_calls_out_of_order() -> None:
    assert ScramSha1().respond(b"n,,n=user,r=abc") == Failure(
        "malformed-request", "unexpected response"
    )
    assert ScramSha1().credentials(None) == Failure(
        "temporary-auth-failure", "credentials out of order"
    )
    mech = ScramSha1()
    mech.start(b"n,,n=user,r=abc")
    assert isinstance(mech.start(b"n,,n=user,r=abc"), Failure)
    mech = ScramSha1()
    mech.start(b"n,,n=user,r=abc")
    assert isinstance(mech.respond(b"c=biws,r=abc,p=AAAA"), Failure)  # before credentials


@pytest.mark.parametrize(
    ("authzid", "ok"),
    [
        ("user", True),
        ("user@example.com", True),
        ("User@Example.COM", True),
        ("juliet@example.com", False),
        ("user@other.example", False),
        ("user@example.com/res", False),
    ],
)
def test_authzid(authzid: str, ok: bool) -> None:
    result = _client_login("SCRAM-SHA-256", "user", "pencil", authzid=authzid)
    assert isinstance(result, Success) is ok
    if not ok:
        assert result == Failure("invalid-authzid")


# --- a real client ---------------------------------------------------------------


def _client_login(
    mech_name: str,
    username: str,
    password: str,
    *,
    stored_password: str = "pencil",
    authzid: str | None = None,
    binding_proposed: bool = True,
    known: bool = True,
) -> Any:
    """Run slixmpp's client-side SCRAM against ours; return our last step."""
    creds = {"username": username, "password": password}
    if authzid is not None:
        creds["authzid"] = authzid
    security = {
        "encrypted": True,
        "unencrypted_scram": True,
        "binding_proposed": binding_proposed,
        "tls_version": "TLSv1.3",
    }
    client = choose([mech_name], lambda required, optional: dict(creds), lambda _: security)
    server = offered_mechanisms("example.com", scram=True)[mech_name]()
    step = server.start(client.process(b""))
    assert isinstance(step, NeedScramCredentials)
    identity = Identity(step.username.lower())
    found = (identity, derive_scram(stored_password, step.hash_name)) if known else None
    step = server.respond(client.process(server.credentials(found).data))
    if isinstance(step, Success):
        assert client.process(step.additional_data) == b""  # client verified the server
    return step


@pytest.mark.parametrize("mech_name", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
@pytest.mark.parametrize("binding_proposed", [True, False], ids=["flag-n", "flag-y"])
def test_slixmpp_client_logs_in(mech_name: str, binding_proposed: bool) -> None:
    step = _client_login(mech_name, "juliet", "s3cr3t pass", stored_password="s3cr3t pass",
                         binding_proposed=binding_proposed)  # fmt: skip
    assert isinstance(step, Success)
    assert step.identity == Identity("juliet")


def test_slixmpp_client_with_comma_in_name() -> None:
    step = _client_login("SCRAM-SHA-1", "a,b=c", "pencil")
    assert isinstance(step, Success)
    assert step.identity.localpart == "a,b=c"


@pytest.mark.parametrize("known", [True, False], ids=["wrong-password", "unknown-user"])
def test_slixmpp_client_refused(known: bool) -> None:
    step = _client_login("SCRAM-SHA-256", "juliet", "wrong", known=known)
    assert step == Failure("not-authorized")


def test_slixmpp_client_checks_our_server_signature() -> None:
    """The v= check in _client_login is real: a tampered signature is refused."""
    creds = {"username": "juliet", "password": "pencil"}
    security = {"encrypted": True, "unencrypted_scram": True, "binding_proposed": True}
    client = choose(["SCRAM-SHA-256"], lambda r, o: dict(creds), lambda _: security)
    server = ScramSha256()
    server.start(client.process(b""))
    first = server.credentials((USER, derive_scram("pencil", "sha256")))
    assert isinstance(first, Challenge)
    success = server.respond(client.process(first.data))
    assert isinstance(success, Success)
    signature = bytearray(base64.b64decode(success.additional_data[2:]))
    signature[0] ^= 1
    with pytest.raises(SASLMutualAuthFailed):
        client.process(b"v=" + base64.b64encode(bytes(signature)))
