"""The TLS floor of every TLS port, with real handshakes against a running server.

Direct TLS (XEP-0368), STARTTLS on the client port and HTTPS must refuse TLS 1.0 and 1.1,
accept TLS 1.2 and 1.3, and in TLS 1.2 accept only ECDHE (or DHE) key exchange with an
AEAD cipher: every TLS 1.2 suite this machine's OpenSSL knows is offered alone, and the
ones the server takes are checked. Both kinds of certificate a site may use are covered:
the generated ECDSA pair and a configured RSA leaf under an intermediate CA, whose chain
must be served (a client trusting only the root verifies it). The audit with testssl.sh
behind these rules is in bench/README.md ("TLS audit").
"""

from __future__ import annotations

import datetime
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.raw_client import RawClient
from tests.xmppd_process import XmppdProcess, running_server

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning"),
]

PORTS = ("direct_tls", "starttls", "https")
#: Client-side: everything OpenSSL can still do, so a refusal is the server's.
LEGACY = "ALL:@SECLEVEL=0"
#: How a handshake the server refuses ends on the client's side.
REFUSALS = (
    "TLSV1_ALERT_PROTOCOL_VERSION",
    "UNSUPPORTED_PROTOCOL",
    "UNEXPECTED_EOF_WHILE_READING",
    "ConnectionResetError",
)
AEAD_FS = re.compile(r"^(ECDHE|DHE)-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$")


def _client(version: ssl.TLSVersion, ciphers: str = LEGACY) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = version
    ctx.set_ciphers(ciphers)
    return ctx


def _port(srv: XmppdProcess, kind: str) -> int:
    return {"direct_tls": srv.tls_port, "starttls": srv.port, "https": srv.https_port}[kind]


def handshake(srv: XmppdProcess, kind: str, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    """A TLS connection to one of the server's TLS ports (after ``<proceed/>`` on the
    client port); raises ``ssl.SSLError`` when the handshake fails."""
    raw = RawClient(_port(srv, kind))
    if kind == "starttls":
        raw.open_stream()
        raw.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        raw.read_until(b"<proceed")
    try:
        return ctx.wrap_socket(raw.sock, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


def refused(srv: XmppdProcess, kind: str, ctx: ssl.SSLContext) -> str:
    """The reason of a handshake that must fail."""
    with pytest.raises((ssl.SSLError, ConnectionResetError)) as info:
        handshake(srv, kind, ctx).close()
    return getattr(info.value, "reason", None) or type(info.value).__name__


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str, key: rsa.RSAPrivateKey, issuer: str, signer: rsa.RSAPrivateKey, *, ca: bool
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
    return builder.sign(signer, hashes.SHA256())


def rsa_chain(directory: Path) -> tuple[Path, Path, Path]:
    """root CA -> intermediate CA -> RSA leaf for localhost: (fullchain, key, root)."""
    keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3)]
    root = _cert("Test Root", keys[0], "Test Root", keys[0], ca=True)
    inter = _cert("Test Intermediate", keys[1], "Test Root", keys[0], ca=True)
    leaf = _cert("localhost", keys[2], "Test Intermediate", keys[1], ca=False)
    pem = serialization.Encoding.PEM
    chain, key, root_path = (
        directory / "fullchain.pem",
        directory / "key.pem",
        directory / "root.pem",
    )
    chain.write_bytes(leaf.public_bytes(pem) + inter.public_bytes(pem))
    key.write_bytes(
        keys[2].private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key.chmod(0o600)
    root_path.write_bytes(root.public_bytes(pem))
    return chain, key, root_path


@pytest.fixture(scope="module", params=["ecdsa-self-signed", "rsa-chain"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[XmppdProcess, Path | None]]:
    tmp = tmp_path_factory.mktemp(request.param)
    tls: dict[str, str] = {}
    root = None
    if request.param == "rsa-chain":
        chain, key, root = rsa_chain(tmp)
        tls = {"cert": str(chain), "key": str(key)}
    with running_server(tmp, **({"tls": tls} if tls else {})) as srv:
        yield srv, root


def test_the_client_side_of_this_test_can_still_speak_tls_1_0(tmp_path: Path) -> None:
    """Control: with LEGACY settings this machine's OpenSSL does offer TLS 1.0, so a
    refusal below is the server's and not our own client's."""
    chain, key, _ = rsa_chain(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.minimum_version = ssl.TLSVersion.TLSv1
    server_ctx.set_ciphers(LEGACY)
    server_ctx.load_cert_chain(chain, key)
    listener = socket.create_server(("127.0.0.1", 0))
    versions: list[str | None] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            versions.append(tls.version())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with socket.create_connection(listener.getsockname(), timeout=5) as sock:
        with _client(ssl.TLSVersion.TLSv1).wrap_socket(sock) as tls:
            assert tls.version() == "TLSv1"
    thread.join(5)
    listener.close()
    assert versions == ["TLSv1"]


@pytest.mark.parametrize("kind", PORTS)
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_tls_1_0_and_1_1_are_refused(
    server: tuple[XmppdProcess, Path | None], kind: str, version: ssl.TLSVersion
) -> None:
    srv, _ = server
    reason = refused(srv, kind, _client(version))
    # the server's protocol_version alert, or its closing the connection (trio does not
    # always flush the alert), never a local "no protocols available"
    assert reason in REFUSALS, reason
    with handshake(srv, kind, _client(ssl.TLSVersion.TLSv1_3)) as tls:  # still serving
        assert tls.version() == "TLSv1.3"


@pytest.mark.parametrize("kind", PORTS)
def test_tls_1_2_and_1_3_are_accepted_without_compression(
    server: tuple[XmppdProcess, Path | None], kind: str
) -> None:
    srv, _ = server
    for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
        ctx = _client(version, "DEFAULT")
        if kind == "https":
            ctx.set_alpn_protocols(["h2", "http/1.1"])
        with handshake(srv, kind, ctx) as tls:
            assert tls.version() == name
            assert tls.compression() is None
            if kind == "https":
                assert tls.selected_alpn_protocol() == "h2"


@pytest.mark.parametrize("kind", PORTS)
def test_every_tls_1_2_suite_accepted_is_ephemeral_and_aead(
    server: tuple[XmppdProcess, Path | None], kind: str
) -> None:
    srv, _ = server
    known = _client(ssl.TLSVersion.TLSv1_2).get_ciphers()
    names = sorted(
        {c["name"] for c in known if c["protocol"] != "TLSv1.3"}
        - {c["name"] for c in known if "PSK" in c["name"] or "SRP" in c["name"]}
    )
    assert len(names) > 30, names  # the client really offers the weak ones too
    accepted = []
    for name in names:
        try:
            with handshake(srv, kind, _client(ssl.TLSVersion.TLSv1_2, f"{name}:@SECLEVEL=0")) as t:
                accepted.append(t.cipher()[0])
        except (ssl.SSLError, ConnectionResetError):
            continue
    assert accepted, "no TLS 1.2 suite accepted at all"
    weak = [n for n in accepted if not AEAD_FS.match(n)]
    assert not weak, f"{kind} accepts TLS 1.2 suites without forward secrecy or AEAD: {weak}"


@pytest.mark.parametrize("server", ["rsa-chain"], indirect=True)
@pytest.mark.parametrize("kind", PORTS)
def test_the_intermediate_certificate_is_served(
    server: tuple[XmppdProcess, Path | None], kind: str
) -> None:
    srv, root = server
    assert root is not None
    ctx = ssl.create_default_context(cafile=str(root))  # only the root is trusted
    with handshake(srv, kind, ctx) as tls:
        assert tls.getpeercert()["subject"] == ((("commonName", "localhost"),),)
