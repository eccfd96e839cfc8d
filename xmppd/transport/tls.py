"""TLS contexts and the self-signed certificate made on first start.

A newcomer's ``xmppd serve`` must work without a certificate; a real deployment points
``[tls] cert``/``key`` at its own (or runs behind a TLS-terminating proxy for HTTP).
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from xmppd.private_files import private_dir

log = logging.getLogger("xmppd.tls")


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
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
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


def server_context(
    cert_path: Path, key_path: Path, alpn: list[str] | None = None
) -> ssl.SSLContext:
    """A server-side context: TLS 1.2+, the library's default secure ciphers."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_path), str(key_path))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx
