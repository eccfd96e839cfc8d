"""The one TLS policy every listener's context is made with, and the generated pair."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from xmppd.transport.tls import (
    HTTPS_ALPN,
    ensure_self_signed,
    https_context,
    load_pair,
    server_context,
)


def _pair(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem"
    ensure_self_signed(cert, key, "example.org")
    return cert, key


def test_every_context_has_the_same_floor_and_options(tmp_path: Path) -> None:
    cert, key = _pair(tmp_path)
    pair = load_pair(cert, key)
    for ctx in (server_context(cert, key), https_context(cert, key), pair.c2s, pair.https):
        assert ctx.minimum_version is ssl.TLSVersion.TLSv1_2
        for option in (
            ssl.OP_NO_COMPRESSION,
            ssl.OP_CIPHER_SERVER_PREFERENCE,
            ssl.OP_NO_RENEGOTIATION,
        ):
            assert ctx.options & option, option
        tls12 = [c for c in ctx.get_ciphers() if c["protocol"] != "TLSv1.3"]
        assert tls12
        for cipher in tls12:
            assert cipher["kea"] == "kx-ecdhe", cipher["name"]
            assert cipher["aead"], cipher["name"]


def test_the_https_context_offers_h2_and_http_1_1(tmp_path: Path) -> None:
    cert, key = _pair(tmp_path)
    assert HTTPS_ALPN == ["h2", "http/1.1"]
    # the ALPN list is not readable back from an SSLContext: a handshake shows it
    server = https_context(cert, key)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    client.set_alpn_protocols(["h2"])
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side, out, into in ((c, c_out, s_in), (s, s_out, c_in)):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
            into.write(out.read())
    assert c.selected_alpn_protocol() == "h2"
    assert s.version() in ("TLSv1.3", "TLSv1.2")


def test_the_generated_certificate_is_a_server_certificate_checkers_accept(
    tmp_path: Path,
) -> None:
    cert_path, _ = _pair(tmp_path)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime <= datetime.timedelta(days=825)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    assert not usage.value.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
