"""The ``<stream:features/>`` a client stream offers, from its settings (RFC 6120 §4.3.2).

Before authentication: STARTTLS (``<required/>`` when the policy says so) and the SASL
mechanisms, when the stream may authenticate now. After it: resource binding, the
optional session (RFC 3921 compatibility), roster versioning and pre-approval (RFC 6121
§2.6, §3.4), and, when enabled, stream management (XEP-0198) and client state indication
(XEP-0352 §4.1). The server's XEP-0115 caps come last in both.
"""

from __future__ import annotations

from xmppd.stream import sm as smp
from xmppd.stream.c2s_events import C2SSettings
from xmppd.xml import ns


def negotiation_features(
    settings: C2SSettings, tls_active: bool, sasl_allowed: bool
) -> list[bytes]:
    """What a stream offers before it is authenticated."""
    parts: list[bytes] = []
    if settings.tls_available and not tls_active:
        required = b"<required/>" if settings.tls_required else b""
        parts.append(b'<starttls xmlns="%s">%s</starttls>' % (ns.TLS.encode(), required))
    if sasl_allowed:
        parts.append(b'<mechanisms xmlns="%s">' % ns.SASL.encode())
        parts += [b"<mechanism>%s</mechanism>" % name.encode() for name in settings.mechanisms]
        parts.append(b"</mechanisms>")
    return parts


def bound_features(settings: C2SSettings) -> list[bytes]:
    """What an authenticated stream offers (after the SASL restart)."""
    parts = [
        b'<bind xmlns="%s"/>' % ns.BIND.encode(),
        b'<session xmlns="%s"><optional/></session>' % ns.SESSION.encode(),
        b'<ver xmlns="%s"/>' % ns.ROSTER_VER.encode(),
        b'<sub xmlns="%s"/>' % ns.PRE_APPROVAL.encode(),
    ]
    if settings.sm_enabled:
        parts.append(smp.FEATURE)
    if settings.csi_enabled:
        parts.append(b'<csi xmlns="%s"/>' % ns.CSI.encode())
    return parts
