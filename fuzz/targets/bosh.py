"""BOSH bodies and the rid/sid/key state machine (xmppd/bosh/body.py, session.py).

The input is a session: a creation request (fuzzed attributes), then a sequence of client
requests (raw fuzz bytes, or well-formed bodies with a fuzzed rid offset, key, pause, ack
and terminate), output pushed and time moving forward.

Invariants:
- ``parse_body`` gives a ``BodyRequest`` with a rid in 1..2^53-1 or a ``BadBody``;
- creation succeeds or raises ``CreationError`` with a XEP-0124 terminal condition;
- ``receive`` answers ``Hold`` or ``Respond``; every response body is a ``<body/>``
  document with, when terminal, a defined condition;
- requests come out of ``take_ready`` once each, in strictly increasing rid order, and
  never one that carried a wrong key (XEP-0124 §15);
- ``flush`` answers each held rid at most once, in rid order.
"""

from __future__ import annotations

import hashlib

import atheris
from lxml import etree

from xmppd.bosh.body import MAX_RID, BadBody, BodyRequest, parse_body
from xmppd.bosh.config import BoshConfig
from xmppd.bosh.session import BoshSession, CreationError, Hold, Respond

NS = "http://jabber.org/protocol/httpbind"
TERMINAL = {
    "bad-request", "host-gone", "host-unknown", "improper-addressing", "internal-server-error",
    "item-not-found", "other-request", "policy-violation", "remote-connection-failed",
    "remote-stream-error", "see-other-uri", "system-shutdown", "undefined-condition",
}  # fmt: skip
SID = "s" * 32
LIMITS = BoshConfig(max_hold=2, max_buffer_bytes=4096)


def parse(data: bytes) -> BodyRequest | BadBody:
    parsed = parse_body(data, max_payload_size=2048, max_depth=8)
    if isinstance(parsed, BodyRequest):
        assert 0 < parsed.rid <= MAX_RID
        for payload in parsed.payloads:
            etree.tostring(payload)
    else:
        assert isinstance(parsed, BadBody) and parsed.reason
        assert parsed.rid is None or 0 < parsed.rid <= MAX_RID
    return parsed


def check_body(data: bytes) -> None:
    el = etree.fromstring(data)
    assert el.tag == "{%s}body" % NS, data
    if el.get("type") == "terminate" and el.get("condition") is not None:
        assert el.get("condition") in TERMINAL, data


def attr(fdp: atheris.FuzzedDataProvider, name: str, choices: list[str]) -> str:
    if fdp.ConsumeBool():
        return ""
    if fdp.ConsumeBool():
        value = fdp.PickValueInList(choices)
    else:
        value = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 12))
    value = value.replace("&", "&amp;").replace("'", "&apos;").replace("<", "&lt;")
    return f" {name}='{value}'"


def keys(seed: str, n: int) -> list[str]:
    """A client's key chain: K[i-1] = SHA-1(K[i]); it sends newkey=K[n], then K[n-1]…"""
    chain = [seed]
    for _ in range(n):
        chain.append(hashlib.sha1(chain[-1].encode()).hexdigest())  # noqa: S324 (XEP-0124)
    return chain


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    rid0 = fdp.ConsumeIntInRange(1, 2**20) if fdp.ConsumeBool() else MAX_RID - 4
    chain = keys("seed", 24)
    use_keys = fdp.ConsumeBool()
    creation = (
        f"<body xmlns='{NS}' xmlns:xmpp='urn:xmpp:xbosh' rid='{rid0}' to='localhost'"
        + attr(fdp, "wait", ["60", "0", "-1", "99999999999999999999", " 5 "])
        + attr(fdp, "hold", ["1", "0", "2", "-3", "x"])
        + attr(fdp, "ver", ["1.6", "1.11", "2", "1.x", ""])
        + attr(fdp, "ack", ["1", "0"])
        + attr(fdp, "xmpp:version", ["1.0"])
        + (f" newkey='{chain[-1]}'" if use_keys else attr(fdp, "newkey", ["ab", "é"]))
        + "/>"
    ).encode()
    request = parse(creation)
    if not isinstance(request, BodyRequest):
        return
    now = 0.0
    try:
        session = BoshSession(SID, request, "localhost", LIMITS, now)
    except CreationError as err:
        assert err.condition in TERMINAL, err.condition
        return
    bad_key: set[int] = set()
    handed: list[int] = []
    answered: set[int] = set()
    for _ in range(fdp.ConsumeIntInRange(1, 12)):
        op = fdp.ConsumeIntInRange(0, 9)
        good_key = False
        if op == 0:
            req = parse(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 200)))
        elif op <= 5:
            rid = session.processed + fdp.ConsumeIntInRange(-2, 4)
            if not 0 < rid <= MAX_RID:
                continue
            extra = ""
            step = rid - rid0
            if use_keys and 0 < step < len(chain) and fdp.ConsumeIntInRange(0, 7):
                extra += f" key='{chain[-1 - step]}'"
                good_key = True
            else:
                extra += attr(fdp, "key", [chain[0], "0" * 40, "é"])
            extra += attr(fdp, "newkey", ["ab", "é", "ZZ"])
            extra += attr(fdp, "pause", ["0", "10", "999999", "-1", "x"])
            extra += attr(fdp, "ack", [str(rid - 1), str(rid0), "-5", "1e9"])
            extra += attr(fdp, "type", ["terminate"])
            extra += attr(fdp, "xmpp:restart", ["true"])
            payload = "<message xmlns='jabber:client'><body>x</body></message>" * (op & 1)
            req = parse(
                f"<body xmlns='{NS}' xmlns:xmpp='urn:xmpp:xbosh' rid='{rid}' sid='{SID}'"
                f"{extra}>{payload}</body>".encode()
            )
        elif op == 6:
            session.push(b"<message xmlns='jabber:client'><body>out</body></message>")
            continue
        elif op == 7:
            now += fdp.ConsumeIntInRange(0, 200) / 2
            session.skip_stale_gap(now)
            session.expired(now)
            continue
        elif op == 8:
            session.end(fdp.PickValueInList([None, "remote-stream-error", "host-gone"]))
            continue
        else:
            for rid, body in session.flush(now):
                assert rid not in answered, rid
                answered.add(rid)
                check_body(body)
            continue
        if not isinstance(req, BodyRequest):
            continue
        # Only the first copy of a rid is processed; a retransmission joins it.
        if session.deadline(req.rid) is None and req.rid > session.processed:
            (bad_key.discard if good_key else bad_key.add)(req.rid)
        outcome = session.receive(req, now)
        if isinstance(outcome, Respond):
            assert outcome.status in (200, 400, 403, 404), outcome
            if outcome.body:
                check_body(outcome.body)
        else:
            assert isinstance(outcome, Hold) and outcome.rid == req.rid
        for ready in session.take_ready():
            assert not handed or ready.rid > handed[-1], (handed, ready.rid)
            assert ready.rid not in bad_key or not use_keys, ready.rid
            handed.append(ready.rid)
