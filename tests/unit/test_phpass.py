"""phpass ($H$ / $P$) verification against vectors made by other implementations.

Where the vectors come from:
- PUBLISHED: ``$H$9/O41.qQjQNlleivjbckbSNpfS4xgh0`` / "pass1234" is the example in the
  documentation of the Rust crate phpbb_pwhash (a port of phpBB 3's phpbb_check_hash);
  ``$P$984478476IagS59wHZvyQMArzfx58u.`` / "hashcat" is hashcat's example hash for mode
  400 (phpass), and the same string with the ``$H$`` prefix is its phpBB3 example.
- PHP: the others were produced with Debian's php-cli 8.2 (PHP's own md5()) running a
  throwaway script of the published algorithm: md5(salt . pw), then 2**n times
  md5(hash . pw), encoded with phpass's base64 — covering costs 2**7..2**13, a non-ASCII
  password, and the empty password.
"""

from __future__ import annotations

import pytest

from xmppd.auth.phpass import encode64, phpass_hash, phpass_verify

VECTORS = [
    ("pass1234", "$H$9/O41.qQjQNlleivjbckbSNpfS4xgh0"),  # published
    ("hashcat", "$P$984478476IagS59wHZvyQMArzfx58u."),  # published
    ("hashcat", "$H$984478476IagS59wHZvyQMArzfx58u."),  # published
    ("secret", "$H$5abcdefghRQTwXLGkACWdXkqlmTP.k1"),  # php-cli, 2**7
    ("p\u00e4ssw\u00f6rd \u2603", "$H$9Zq/9.xY13/1lc0Lhcl5N47apVs8ok."),  # php-cli, UTF-8
    ("correct horse battery staple", "$P$Bsa1tSALTefpSP6m0S3yRtpod5c0Lv0"),  # php-cli, 2**13
    ("", "$H$7........mWUjh0/EkNLNkLVamNuvX/"),  # php-cli, empty password
]


@pytest.mark.parametrize(("password", "stored"), VECTORS)
def test_known_vectors_verify(password: str, stored: str) -> None:
    assert phpass_verify(password, stored)


@pytest.mark.parametrize(("password", "stored"), VECTORS)
def test_wrong_password_is_refused(password: str, stored: str) -> None:
    assert not phpass_verify(password + "x", stored)
    assert not phpass_verify(password.upper() + "!", stored)


def test_hash_reproduces_the_stored_string() -> None:
    assert phpass_hash("pass1234", "$H$9/O41.qQj") == "$H$9/O41.qQjQNlleivjbckbSNpfS4xgh0"


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "$H$9/O41.qQjQNlleivjbckbSNpfS4xgh",  # 33 chars
        "$H$9/O41.qQjQNlleivjbckbSNpfS4xgh00",  # 35 chars
        "$X$9/O41.qQjQNlleivjbckbSNpfS4xgh0",  # unknown prefix
        "$H$4/O41.qQjQNlleivjbckbSNpfS4xgh0",  # cost 2**6: below phpBB's minimum
        "$H$u/O41.qQjQNlleivjbckbSNpfS4xgh0",  # cost 2**31: above phpBB's maximum
        "$H$9/O41.qQjQNlleivjbckbSNpfS4xg\u00e9",  # not ASCII
    ],
)
def test_malformed_hashes_never_verify(stored: str) -> None:
    assert not phpass_verify("pass1234", stored)


def test_encode64_lengths_and_alphabet() -> None:
    assert encode64(b"") == ""
    assert encode64(b"\x00") == ".."
    assert encode64(b"\xff\xff\xff") == "zzzz"
    assert len(encode64(bytes(16))) == 22
