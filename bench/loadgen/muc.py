"""XEP-0045 helpers shared by the MUC scenarios: room names, join, instant-room unlock.

Written for the three servers under test: a join is answered by the existing occupants'
presence, the joiner's own presence (status 110; 201 when the join created the room), then
history (each message with a `<delay>`), then the subject message that ends the sequence.
"""

from __future__ import annotations

import asyncio
import re
import secrets

from . import xmpp

NS_MUC = "http://jabber.org/protocol/muc"
NO_HISTORY = "<history maxstanzas='0'/>"

_FROM = re.compile(r"""\sfrom=['"]([^'"]*)['"]""")
_STATUS = re.compile(r"""<status\s+code=['"](\d+)['"]""")


def new_room(target) -> str:
    """A fresh room JID on the server's MUC service (every server has it at conference.*)."""
    return f"bench-{secrets.token_hex(4)}@conference.{target.domain}"


def attr_from(element: str) -> str:
    m = _FROM.search(element[: element.find(">")])
    return m.group(1) if m else ""


def join_presence(room: str, nick: str, history: str | None = NO_HISTORY) -> str:
    return f"<presence to='{room}/{nick}'><x xmlns='{NS_MUC}'>{history or ''}</x></presence>"


async def join(
    client: xmpp.Client,
    room: str,
    nick: str,
    history: str | None = NO_HISTORY,
    wait_subject: bool = True,
    limit_s: float = 30.0,
) -> dict:
    """Join and wait for the own presence (110) and, with wait_subject, the subject message.

    Returns {"codes": status codes of the self-presence, "history": history messages seen}.
    The client must not have an on_stanza handler set (elements are read with recv()).
    """
    full = f"{room}/{nick}"
    client.send(join_presence(room, nick, history))
    codes: list[str] = []
    n_history = 0
    self_seen = False
    async with asyncio.timeout(limit_s):
        while True:
            el = await client.recv()
            if el.startswith("<stream:error") or el == "</stream:stream>":
                raise xmpp.XmppError(f"stream ended during MUC join: {el[:200]}")
            if el.startswith("<presence"):
                if attr_from(el) != full:
                    continue
                if xmpp.attr_type(el) == "error":
                    raise xmpp.XmppError(f"MUC join refused: {el[:300]}")
                codes = _STATUS.findall(el)
                if "110" in codes:
                    self_seen = True
                    if not wait_subject:
                        break
            elif el.startswith("<message") and attr_from(el).startswith(room):
                if xmpp.attr_type(el) == "error":
                    raise xmpp.XmppError(f"MUC error during join: {el[:300]}")
                if "<subject" in el and "<body" not in el:
                    if self_seen:
                        break
                elif "<delay" in el:
                    n_history += 1
    return {"codes": codes, "history": n_history}


async def unlock_instant(client: xmpp.Client, room: str, limit_s: float = 30.0) -> None:
    """Accept the default configuration of a room just created (XEP-0045 §10.1.2)."""
    ident = "unlock-" + secrets.token_hex(3)
    client.send(
        f"<iq type='set' id='{ident}' to='{room}'>"
        "<query xmlns='http://jabber.org/protocol/muc#owner'>"
        "<x xmlns='jabber:x:data' type='submit'/></query></iq>"
    )
    async with asyncio.timeout(limit_s):
        reply = await client.recv_until(lambda e: e.startswith("<iq") and xmpp.attr_id(e) == ident)
    if xmpp.attr_type(reply) != "result":
        raise xmpp.XmppError(f"instant room config refused: {reply[:300]}")


async def create_room(client: xmpp.Client, room: str, nick: str) -> dict:
    """The first join: creates the room, unlocks it if the server reports 201."""
    res = await join(client, room, nick, NO_HISTORY, wait_subject=False)
    if "201" in res["codes"]:
        await unlock_instant(client, room)
        res["unlocked"] = True
    return res


async def login_all(target, users: list[tuple[str, str]], resource: str) -> list[xmpp.Client]:
    """Logged-in clients (with initial presence), at most 50 logins at a time."""
    sem = asyncio.Semaphore(50)
    made: list[xmpp.Client] = []

    async def one(user: str, password: str) -> xmpp.Client:
        async with sem:
            client = await xmpp.connect(target.host, target.port, target.domain)
            made.append(client)
            async with asyncio.timeout(30):
                await client.login(user, password, target.mechanism, resource, presence=True)
                await client.sync()
            return client

    try:
        return list(await asyncio.gather(*(one(u, p) for u, p in users)))
    except BaseException:
        for c in made:
            c.close()
        raise
