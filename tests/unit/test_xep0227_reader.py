"""The XEP-0227 reader on the XEP's own examples, on files shaped like ejabberd 23.01's
``export_piefxis`` output (src/ejabberd_piefxis.erl: a main file including one file per
host, SCRAM keys as <scram-credentials/> or the older ``password='scram:…'``, pending
requests as <presence type='subscribe'/>), and on bad input."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime
from pathlib import Path

from xmppd.migrate.model import (
    Account,
    Kind,
    OfflineMessage,
    PendingSubscription,
    PrivateXml,
    Problem,
    RosterItem,
    VCard,
)
from xmppd.migrate.xep0227 import Xep0227Source

OLD_NS = "http://www.xmpp.org/extensions/xep-0227.html#ns"


def read(path: Path, kind: Kind) -> tuple[list[object], list[Problem]]:
    got = list(Xep0227Source(path).read(kind))
    return [r for r in got if not isinstance(r, Problem)], [
        p for p in got if isinstance(p, Problem)
    ]


def write(tmp_path: Path, text: str, name: str = "pie.xml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# XEP-0227's examples (§4.2-4.6), one document, in the drafts' namespace as they are written.
XEP_EXAMPLE = f"""<?xml version='1.0' encoding='UTF-8'?>
<server-data xmlns='{OLD_NS}'>
  <host jid='capulet.com'>
    <user name='juliet' password='s3crEt'>
      <query xmlns='jabber:iq:roster'>
        <item jid='romeo@montague.net' name='Romeo' subscription='both'>
          <group>Friends</group>
        </item>
      </query>
      <vCard xmlns='vcard-temp'>
        <FN>Juliet Capulet</FN>
      </vCard>
      <offline-messages>
        <message xmlns='jabber:client' from='romeo@montague.net/orchard'
                 to='juliet@capulet.com/balcony' type='chat'>
          <body>Neither, fair saint, if either thee dislike.</body>
          <delay xmlns='urn:xmpp:delay' from='capulet.com' stamp='1469-07-21T00:32:29Z'>
            Offline Storage
          </delay>
        </message>
      </offline-messages>
    </user>
  </host>
  <host jid='shakespeare.lit'>
    <user name='hamlet' password='2b0Rnot2B'>
      <query xmlns="jabber:iq:private">
        <exodus xmlns="exodus:prefs">
          <defaultnick>Hamlet</defaultnick>
        </exodus>
      </query>
    </user>
  </host>
</server-data>
"""


def test_the_xeps_examples(tmp_path: Path) -> None:
    path = write(tmp_path, XEP_EXAMPLE)
    accounts, problems = read(path, Kind.ACCOUNTS)
    assert problems == []
    assert [(a.jid, a.password) for a in accounts] == [  # type: ignore[attr-defined]
        ("juliet@capulet.com", "s3crEt"),
        ("hamlet@shakespeare.lit", "2b0Rnot2B"),
    ]
    assert read(path, Kind.ROSTERS)[0] == [
        RosterItem("juliet@capulet.com", "romeo@montague.net", "Romeo", "both", groups=("Friends",))
    ]
    (card,), _ = read(path, Kind.VCARDS)
    assert card == VCard(
        "juliet@capulet.com",
        '<vCard xmlns="vcard-temp">\n        <FN>Juliet Capulet</FN>\n      </vCard>',
    )
    (msg,), _ = read(path, Kind.OFFLINE)
    assert isinstance(msg, OfflineMessage) and msg.owner == "juliet@capulet.com"
    assert msg.stamp == datetime(1469, 7, 21, 0, 32, 29)
    assert msg.stanza.startswith('<message xmlns="jabber:client" from="romeo@montague.net/orchard"')
    assert OLD_NS not in msg.stanza  # the file's namespaces stay out of the stanza
    (private,), _ = read(path, Kind.PRIVATE_XML)
    assert isinstance(private, PrivateXml) and private.namespace == "exodus:prefs"
    assert (
        private.owner == "hamlet@shakespeare.lit"
        and "<defaultnick>Hamlet</defaultnick>" in private.xml
    )


def _keys(password: str, salt: bytes, count: int, name: str) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac(name, password.encode(), salt, count)
    client = hmac.new(salted, b"Client Key", name).digest()
    return hashlib.new(name, client).digest(), hmac.new(salted, b"Server Key", name).digest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_ejabberd_export_piefxis_layout(tmp_path: Path) -> None:
    """ejabberd writes DIR/<time>.xml including DIR/<time>_<host>.xml (dots → '_')."""
    salt = b"0123456789abcdef"
    stored, server = _keys("pencil", salt, 4096, "sha1")
    stored256, server256 = _keys("pencil", salt, 4096, "sha256")
    write(
        tmp_path,
        "<?xml version='1.0' encoding='UTF-8'?><server-data xmlns='urn:xmpp:pie:0' "
        "xmlns:xi='http://www.w3.org/2001/XInclude'>"
        "<xi:include href='20260102-030405_example_org.xml'/>"
        "</server-data>",
        "20260102-030405.xml",
    )
    write(
        tmp_path,
        "<?xml version='1.0' encoding='UTF-8'?><host xmlns='urn:xmpp:pie:0' "
        "xmlns:xi='http://www.w3.org/2001/XInclude' jid='example.org'>"
        # 23.01 with auth_password_format: scram
        "<user name='alice'>"
        "<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'>"
        f"<iter-count>4096</iter-count><salt>{b64(salt)}</salt>"
        f"<server-key>{b64(server)}</server-key>"
        f"<stored-key>{b64(stored)}</stored-key></scram-credentials>"
        "<offline-messages><message xmlns='jabber:client' from='bob@example.org/pc'"
        " to='alice@example.org' type='chat'><body>hi</body>"
        "<delay xmlns='urn:xmpp:delay' from='example.org' stamp='2026-01-02T03:04:05.678Z'>"
        "Offline storage</delay></message></offline-messages>"
        "<vCard xmlns='vcard-temp'><NICKNAME>al</NICKNAME></vCard>"
        "<query xmlns='jabber:iq:privacy'><list name='x'/></query>"
        "<query xmlns='jabber:iq:roster'><item subscription='both' jid='bob@example.org'>"
        "<group>Work</group></item>"
        "<item ask='subscribe' subscription='from' jid='carol@other.net'/>"
        "</query>"
        "<presence xmlns='jabber:client' from='dave@other.net' to='alice@example.org' "
        "type='subscribe'><status>let me in</status></presence>"
        "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/>"
        "<storage xmlns='storage:rosternotes'/></query>"
        "</user>"
        # the older form ejabberd still reads: password='scram:[hash,]stored,server,salt,count'
        f"<user name='bob' password='scram:sha256,{b64(stored256)},{b64(server256)},"
        f"{b64(salt)},4096'/>"
        "<user name='carol' password='plain'/>"
        "<user name='nopass'/>"
        "</host>",
        "20260102-030405_example_org.xml",
    )
    path = tmp_path / "20260102-030405.xml"
    accounts, problems = read(path, Kind.ACCOUNTS)
    by_jid = {a.jid: a for a in accounts}  # type: ignore[attr-defined]
    alice, bob = by_jid["alice@example.org"], by_jid["bob@example.org"]
    assert isinstance(alice, Account) and alice.scram is not None and alice.password is None
    assert (alice.scram.hash_name, alice.scram.salt, alice.scram.iterations) == ("sha1", salt, 4096)
    assert (alice.scram.stored_key, alice.scram.server_key) == (stored, server)
    assert bob.scram is not None and bob.scram.hash_name == "sha256"
    assert (bob.scram.stored_key, bob.scram.server_key) == (stored256, server256)
    assert by_jid["carol@example.org"].password == "plain"
    assert "nopass@example.org" not in by_jid
    texts = [p.text for p in problems]
    assert any("privacy lists are not imported" in t for t in texts)
    assert any("nopass@example.org has no password" in t for t in texts)
    assert len(problems) == 2
    roster, _ = read(path, Kind.ROSTERS)
    assert roster == [
        RosterItem("alice@example.org", "bob@example.org", "", "both", groups=("Work",)),
        RosterItem("alice@example.org", "carol@other.net", "", "from", ask_out=True),
    ]
    (sub,), _ = read(path, Kind.PENDING_SUBSCRIPTIONS)
    assert isinstance(sub, PendingSubscription) and sub.from_jid == "dave@other.net"
    assert "<status>let me in</status>" in sub.stanza
    (msg,), _ = read(path, Kind.OFFLINE)
    assert msg.stamp == datetime(2026, 1, 2, 3, 4, 5, 678000)  # type: ignore[attr-defined]
    private, _ = read(path, Kind.PRIVATE_XML)
    assert sorted(p.namespace for p in private) == ["storage:bookmarks", "storage:rosternotes"]  # type: ignore[attr-defined]
    # the general problems are listed once, in the accounts pass
    assert read(path, Kind.VCARDS)[1] == []


def test_unknown_and_malformed_elements_are_problems_not_fatal(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "<server-data xmlns='urn:xmpp:pie:0'><host jid='example.org'>"
        "<user name='a' password='x'><frobnicate xmlns='urn:example'/>"
        "<query xmlns='jabber:iq:roster'><item jid='b@example.org' subscription='sideways'/>"
        "<item jid='c@example.org' subscription='to'/><item/></query>"
        "<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-MD5'/>"
        "<offline-messages><message xmlns='jabber:client'><delay xmlns='urn:xmpp:delay' "
        "stamp='yesterday'/></message></offline-messages></user>"
        "<user name='b' password='y'/></host></server-data>",
    )
    accounts, problems = read(path, Kind.ACCOUNTS)
    assert [a.jid for a in accounts] == ["a@example.org", "b@example.org"]  # type: ignore[attr-defined]
    assert [p.kind for p in problems] == [None, Kind.ACCOUNTS]
    assert "unknown <frobnicate xmlns='urn:example'/>" in problems[0].text
    roster, problems = read(path, Kind.ROSTERS)
    assert [r.contact for r in roster] == ["c@example.org"]  # type: ignore[attr-defined]
    assert len(problems) == 2 and "sideways" in problems[0].text
    offline, problems = read(path, Kind.OFFLINE)
    assert (
        offline == [] and len(problems) == 1 and "'yesterday' is not a DateTime" in problems[0].text
    )


def test_a_truncated_file_reports_where_it_stops(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "<server-data xmlns='urn:xmpp:pie:0'><host jid='example.org'>"
        "<user name='a' password='x'/><user name='b' password='y'><query xmlns='jabber:iq:roster'>",
    )
    accounts, problems = read(path, Kind.ACCOUNTS)
    assert [a.jid for a in accounts] == ["a@example.org"]  # type: ignore[attr-defined]
    assert len(problems) == 1 and "not well-formed" in problems[0].text


def test_a_dtd_is_refused_so_no_entity_is_expanded(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    path = write(
        tmp_path,
        f"<?xml version='1.0'?><!DOCTYPE server-data [<!ENTITY x SYSTEM 'file://{secret}'>"
        "<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;&lol;&lol;'>]>"
        "<server-data xmlns='urn:xmpp:pie:0'><host jid='example.org'><user name='a' password='x'>"
        "<vCard xmlns='vcard-temp'><FN>&x;&lol2;</FN></vCard></user></host></server-data>",
    )
    for kind in (Kind.ACCOUNTS, Kind.VCARDS):
        assert read(path, kind)[0] == []
    (problem,) = read(path, Kind.ACCOUNTS)[1]
    assert "DTD" in problem.text and "TOP SECRET" not in problem.text


def test_includes_stay_beside_the_main_file(tmp_path: Path) -> None:
    outside = tmp_path / "outside.xml"
    outside.write_text(
        "<host xmlns='urn:xmpp:pie:0' jid='evil.org'><user name='x' password='p'/></host>"
    )
    (tmp_path / "export").mkdir()
    path = write(
        tmp_path / "export",
        "<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'>"
        f"<xi:include href='../outside.xml'/><xi:include href='{outside}'/>"
        "<xi:include href='http://example.com/x.xml'/><xi:include href='missing.xml'/>"
        "<xi:include href='self.xml'/></server-data>",
    )
    write(
        tmp_path / "export",
        "<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'>"
        "<xi:include href='self.xml'/></server-data>",
        "self.xml",
    )
    accounts, problems = read(path, Kind.ACCOUNTS)
    assert accounts == []
    texts = [p.text for p in problems]
    assert texts[:3] == ["refused: only files beside the main file"] * 3
    assert texts[3].startswith("cannot be read")
    # self.xml's root is <server-data/> where a <host/> belongs: not read, no recursion
    assert texts[4] == "unknown <server-data xmlns='urn:xmpp:pie:0'/> in <server>"
    assert len(texts) == 5


def test_not_an_xep0227_file(tmp_path: Path) -> None:
    path = write(tmp_path, "<html><body>hello</body></html>")
    records, problems = read(path, Kind.ACCOUNTS)
    assert records == [] and "not XEP-0227's root" in problems[0].text
