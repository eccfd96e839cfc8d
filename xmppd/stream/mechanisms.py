"""The SASL mechanisms a c2s stream offers, strongest first (RFC 6120 §6.3.3).

One function builds the list for the server and for the tests, so a test that logs in
through it exercises exactly what clients are offered. SCRAM needs stored keys: a
backend that has none (phpBB's password hashes) is offered PLAIN only. SASL EXTERNAL is
added per stream by the HTTP layer when forum cookies prove a member.
"""

from __future__ import annotations

from collections.abc import Callable

from xmppd.stream.sasl import PlainMechanism, ServerMechanism
from xmppd.stream.scram import ScramSha1, ScramSha256

MechanismFactories = dict[str, Callable[[], ServerMechanism]]


def offered_mechanisms(domain: str, *, scram: bool) -> MechanismFactories:
    """Name -> a factory of a fresh mechanism per exchange, in the order offered."""
    factories: MechanismFactories = {}
    if scram:
        factories["SCRAM-SHA-256"] = lambda: ScramSha256(domain=domain)
        factories["SCRAM-SHA-1"] = lambda: ScramSha1(domain=domain)
    factories["PLAIN"] = PlainMechanism
    return factories
