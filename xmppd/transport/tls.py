"""TLS contexts and the self-signed certificate made on first start.

A newcomer's ``xmppd serve`` must work without a certificate; a real deployment points
``[tls] cert``/``key`` at its own (or runs behind a TLS-terminating proxy for HTTP).

:func:`load_pair` checks a certificate and key and builds every context the listeners
use (c2s STARTTLS and direct TLS, HTTPS) at once. The server keeps the result in one
attribute that each listener reads per handshake, so a reload swaps the pair for new
handshakes in one assignment, while established connections keep the pair they were made
with. A pair that does not load leaves nothing half-changed: it is refused whole (an
``SSLContext`` changed in place by ``load_cert_chain`` could be left with the new
certificate and the old key when the key does not match).
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from xmppd.config import Config, ConfigError
from xmppd.private_files import check_secret_file, private_dir

log = logging.getLogger("xmppd.tls")

#: Validity of the generated certificate: under the 825 days certificate checkers (and
#: Apple's clients) accept for a leaf; the pair is made again when its files are removed.
SELF_SIGNED_DAYS = 820

#: An ECDSA server key signs the handshake and nothing else.
_SERVER_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def ensure_self_signed(cert_path: Path, key_path: Path, domain: str) -> None:
    """Create a self-signed certificate for ``domain`` unless one is already there."""
    if cert_path.exists() and key_path.exists():
        return
    private_dir(cert_path.parent)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    alt_names: list[x509.GeneralName] = [x509.DNSName(domain), x509.DNSName(f"*.{domain}")]
    if domain == "localhost":
        alt_names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        alt_names.append(x509.IPAddress(ipaddress.ip_address("::1")))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_SERVER_KEY_USAGE, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    log.info("event=self_signed_certificate_created domain=%s path=%s", domain, cert_path)


#: TLS 1.2 suites: ECDHE key exchange (forward secrecy) with an AEAD cipher only, the
#: Mozilla "intermediate" set minus DHE (no DH parameters are loaded; certificates here
#: are ECDSA or RSA, both served by these). No CBC (LUCKY13), no static RSA (ROBOT), no
#: SHA-1 MACs. TLS 1.3's suites are all AEAD with forward secrecy: OpenSSL's defaults.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def server_context(
    cert_path: Path, key_path: Path, alpn: list[str] | None = None
) -> ssl.SSLContext:
    """The one TLS policy of every listener (c2s STARTTLS, direct TLS, HTTPS).

    TLS 1.2 and 1.3 only; :data:`TLS12_CIPHERS` in the server's order; no compression
    (CRIME); no renegotiation (client-initiated renegotiation is a cheap CPU attack and
    nothing here needs it); OpenSSL makes a fresh ECDH key per handshake. Session
    resumption stays on (tickets and the session cache: OpenSSL's defaults, ticket keys
    rotated by OpenSSL). The certificate file may hold the chain after the leaf: it is
    all served.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    ctx.load_cert_chain(str(cert_path), str(key_path))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


#: What the HTTPS port negotiates with ALPN.
HTTPS_ALPN = ["h2", "http/1.1"]


def https_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """The HTTPS port's context: the shared policy with ALPN h2 and http/1.1 (RFC 9113
    §9.2 asks TLS 1.2+, no compression, no renegotiation and AEAD ephemeral suites for
    HTTP/2: all part of it). Our accept loop wraps connections with it."""
    return server_context(cert_path, key_path, HTTPS_ALPN)


@dataclass(frozen=True, slots=True)
class TlsPair:
    """A checked certificate chain and key, loaded into the context of every listener."""

    cert_path: Path
    key_path: Path
    #: c2s: STARTTLS on 5222 and direct TLS on 5223.
    c2s: ssl.SSLContext
    #: The HTTP port's TLS listener (5443).
    https: ssl.SSLContext
    #: SHA-256 of the leaf certificate (hex), as clients show it.
    fingerprint: str
    subject: str
    not_after: datetime.datetime
    #: SHA-256 of both files' bytes: tells a reload whether anything changed.
    digest: str

    def describe(self) -> str:
        """key=value words for the log: which certificate is in use until when."""
        return (
            f"subject={self.subject!r} not_after={self.not_after:%Y-%m-%dT%H:%M:%SZ} "
            f"sha256={self.fingerprint}"
        )


def _read(path: Path, key: str, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {what} {path} ({exc.strerror})") from None


def load_pair(
    cert_path: Path, key_path: Path, *, cert_key: str = "tls.cert", key_key: str = "tls.key"
) -> TlsPair:
    """Read and check ``cert_path``/``key_path``; build the listeners' contexts.

    Blocking (file reads). Any problem is a :class:`ConfigError` naming the configuration
    key (``cert_key``/``key_key``): unreadable, not PEM, an encrypted key, a key that does
    not belong to the certificate. The key file gets the private-file treatment: world
    access is taken off if the file is ours, and a warning is logged if it stays readable.
    """
    cert_pem = _read(cert_path, cert_key, "the certificate")
    if key_path.exists():
        check_secret_file(key_path)
    key_pem = _read(key_path, key_key, "the private key")
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise ConfigError(f"{cert_key}: {cert_path} holds no PEM certificate") from None
    leaf = chain[0]
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise ConfigError(f"{key_key}: {key_path} is encrypted (give an unencrypted key)") from None
    except ValueError:
        raise ConfigError(f"{key_key}: {key_path} holds no PEM private key") from None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != leaf.public_key().public_bytes(der, spki):
        raise ConfigError(f"{key_key}: {key_path} is not the key of the certificate in {cert_key}")
    try:
        c2s = server_context(cert_path, key_path)
        https = https_context(cert_path, key_path)
    except (ssl.SSLError, OSError) as exc:  # replaced between our read and OpenSSL's
        raise ConfigError(f"{cert_key}: the pair does not load ({exc})") from None
    return TlsPair(
        cert_path=cert_path,
        key_path=key_path,
        c2s=c2s,
        https=https,
        fingerprint=leaf.fingerprint(hashes.SHA256()).hex(),
        subject=leaf.subject.rfc4514_string(),
        not_after=leaf.not_valid_after_utc,
        digest=hashlib.sha256(cert_pem + b"\0" + key_pem).hexdigest(),
    )


def read_tls(config: Config) -> TlsPair:
    """The configured certificate and key, or the self-signed pair under ``data_dir``
    (made on first use); checked and loaded. Blocking; ConfigError names the key."""
    if config.tls.cert:
        return load_pair(Path(config.tls.cert), Path(config.tls.key))
    cert = config.data_path / "tls" / "cert.pem"
    key = config.data_path / "tls" / "key.pem"
    ensure_self_signed(cert, key, config.server.domain)
    return load_pair(cert, key)
