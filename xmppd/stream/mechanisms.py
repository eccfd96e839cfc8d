"""The SASL mechanisms a c2s stream offers, strongest first (RFC 6120 §6.3.3).

One function builds the list for the server and for the tests, so a test that logs in
through it exercises exactly what clients are offered. SCRAM needs stored keys: a
backend that has none (phpBB's password hashes) is offered PLAIN only. SASL EXTERNAL is
added per stream by the HTTP layer when forum cookies prove a member.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from xmppd.stream.sasl import PlainMechanism, ServerMechanism
from xmppd.stream.scram import ScramSha1, ScramSha256

MechanismFactories = dict[str, Callable[[], ServerMechanism]]


def offered_mechanisms(
    domain: str, *, scram: bool, hashes: Collection[str] = ("sha256", "sha1")
) -> MechanismFactories:
    """Name -> a factory of a fresh mechanism per exchange, in the order offered.

    ``hashes`` are the SCRAM hashes the backend can verify for *every* account: a client
    picks the strongest mechanism offered before it names the account, so a hash some
    account lacks keys for (imported from ejabberd, which stores one) is not offered.
    """
    factories: MechanismFactories = {}
    if scram and "sha256" in hashes:
        factories["SCRAM-SHA-256"] = lambda: ScramSha256(domain=domain)
    if scram and "sha1" in hashes:
        factories["SCRAM-SHA-1"] = lambda: ScramSha1(domain=domain)
    factories["PLAIN"] = PlainMechanism
    return factories
