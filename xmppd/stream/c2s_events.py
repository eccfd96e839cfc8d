"""What a c2s stream asks of its trio shell and tells it: the events
:class:`~xmppd.stream.c2s.C2SStream` returns, and what it needs to know (:class:`C2SSettings`).

Each request names the method the shell answers with; the stream checks that the answer
is still wanted (its phase table, :mod:`xmppd.stream.c2s_states`), so a late answer for
a stream that moved on is ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

from xmppd.auth.base import Identity
from xmppd.jid import JID
from xmppd.stream import sm as smp
from xmppd.stream.machine import StreamEnded
from xmppd.stream.sasl import ServerMechanism


@dataclass(frozen=True, slots=True)
class StartTLS:
    """Flush what is pending, wrap the transport in TLS, then call ``tls_established()``."""


@dataclass(frozen=True, slots=True)
class CheckPassword:
    """Verify with the auth backend, then call ``password_checked()``."""

    authcid: str
    authzid: str | None
    password: str


@dataclass(frozen=True, slots=True)
class FetchScram:
    """Look up stored SCRAM keys, then call ``scram_credentials()``."""

    username: str
    hash_name: str


@dataclass(frozen=True, slots=True)
class Authenticated:
    identity: Identity
    mechanism: str


@dataclass(frozen=True, slots=True)
class AuthFailed:
    """Feed for rate limits: ``username`` may be None when the payload was unusable."""

    username: str | None
    condition: str
    #: The SASL mechanism of the failed exchange ("" when none was started).
    mechanism: str = ""


@dataclass(frozen=True, slots=True)
class BindRequest:
    """Ask the router to bind ``jid``; then call ``bind_result()``."""

    jid: JID
    iq_id: str


@dataclass(frozen=True, slots=True)
class StanzaReceived:
    stanza: etree._Element


@dataclass(frozen=True, slots=True)
class SMEnabled:
    """XEP-0198 is on: attach ``sm`` to the session (and register its token)."""

    sm: smp.StreamManagement


@dataclass(frozen=True, slots=True)
class AckAnswer:
    """An ``<a h/>`` (XEP-0198 §4) counting stanzas that came before it in the same read:
    the shell sends it only after routing them, so a stanza is acknowledged only once it
    was handled (stored offline, say), never while that is still under way."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ResumeRequest:
    """``<resume/>`` after auth: find the session, then ``resumed()``/``resume_failed()``."""

    previd: str
    h: int


@dataclass(frozen=True, slots=True)
class ClientStateChanged:
    """XEP-0352 §4.2: the client says it is ``active`` (True) or ``inactive`` (False)."""

    active: bool


StreamEvent = (
    StartTLS | CheckPassword | FetchScram | Authenticated | AuthFailed | BindRequest
    | StanzaReceived | StreamEnded | SMEnabled | ResumeRequest | AckAnswer
    | ClientStateChanged
)  # fmt: skip


@dataclass(slots=True)
class C2SSettings:
    """What a stream needs to know about its server and transport."""

    domain: str
    mechanisms: dict[str, Callable[[], ServerMechanism]]
    tls_available: bool = False
    tls_active: bool = False
    #: TLS must be negotiated before SASL (``require_encryption`` and not exempt).
    tls_required: bool = True
    max_stanza_size: int = 262_144
    max_depth: int = 64
    lang: str = "en"
    #: XEP-0198 offered after authentication.
    sm_enabled: bool = False
    #: Longest a detached session is kept, seconds (the ``max`` we grant).
    sm_resume_timeout: int = 300
    sm_request_every: int = 5
    sm_max_unacked: int = 500
    #: XEP-0352 client state indication offered after bind (``[csi] enabled``).
    csi_enabled: bool = False
    #: The server's XEP-0115 ``<c/>`` (§6.3), serialised, for the stream features.
    caps: bytes = b""
