"""Connection admission: per-address groups (IPv6 by prefix), caps, tickets."""

from __future__ import annotations

from xmppd.transport.admission import Admission, address_key


def test_ipv4_counts_alone_and_mapped_ipv6_is_ipv4() -> None:
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"


def test_ipv6_counts_per_prefix() -> None:
    a = address_key("2001:db8:1:2:aaaa::1")
    b = address_key("2001:db8:1:2:ffff:ffff:ffff:ffff")
    assert a == b == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != a
    assert address_key("2001:db8:1:2::1", 48) == "2001:db8:1::/48"
    assert address_key("2001:db8::1", 128) == "2001:db8::1/128"
    assert address_key("fe80::1%eth0") == "fe80::/64"


def test_unparsable_peer_is_its_own_key() -> None:
    assert address_key("/run/x.sock") == "/run/x.sock"


def test_per_address_cap_counts_a_whole_ipv6_prefix() -> None:
    admission = Admission(per_address=2)
    first = admission.try_admit("2001:db8::1")
    second = admission.try_admit("2001:db8::2")
    assert first is not None and second is not None
    assert admission.try_admit("2001:db8::3") is None
    assert admission.try_admit("2001:db8:0:1::1") is not None  # another /64
    first.release()
    first.release()  # idempotent
    assert admission.count("2001:db8::9") == 1
    assert admission.try_admit("2001:db8::3") is not None


def test_total_cap_and_release_by_context_manager() -> None:
    admission = Admission(per_address=10, total=2)
    with admission.try_admit("192.0.2.1"):
        with admission.try_admit("192.0.2.2"):
            assert admission.try_admit("192.0.2.3") is None
            assert admission.total_count == 2
        assert admission.try_admit("192.0.2.3") is not None
    assert admission.total_count == 1


def test_zero_means_no_cap() -> None:
    admission = Admission(per_address=0, total=0)
    tickets = [admission.try_admit("192.0.2.1") for _ in range(1000)]
    assert all(tickets) and admission.count("192.0.2.1") == 1000
    for ticket in tickets:
        ticket.release()
    assert admission.count("192.0.2.1") == 0 and admission.total_count == 0


def test_exempt_counts_only_against_the_total() -> None:
    admission = Admission(per_address=1, total=3)
    assert admission.try_admit("10.0.0.1") is not None
    assert admission.try_admit("10.0.0.1") is None  # per address
    assert not admission.full
    proxy = [admission.try_admit("10.0.0.1", exempt=True) for _ in range(2)]
    assert all(proxy)  # a trusted proxy's connections: total only
    assert admission.full
    assert admission.try_admit("10.0.0.1", exempt=True) is None
    assert admission.try_admit("192.0.2.9") is None  # the total holds for everyone
