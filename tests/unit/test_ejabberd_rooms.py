"""ejabberd 23.01 room options → xmppd's Room and Affiliation records.

The option lists below have the shape ``mod_muc_room:make_opts/2`` gives them in ejabberd
23.01 (src/mod_muc_room.erl, lines 4078-4124: the ``#config{}`` fields in record order, then
captcha_whitelist, affiliations, roles, subject, subject_author, hats_users,
hibernation_time, subscribers), printed the way ``~p`` prints them.
"""

from __future__ import annotations

import pytest

from xmppd.migrate.ejabberd_rooms import convert_room, parse_sql_opts, room_jid
from xmppd.migrate.erlang_terms import parse_term
from xmppd.migrate.model import Affiliation, Kind, Room

OPTS_2301 = """[{title,<<"Caf\xc3\xa9 talk">>},
 {description,<<"The forum's room">>},
 {allow_change_subj,false},
 {allow_query_users,true},
 {allow_private_messages,true},
 {allow_private_messages_from_visitors,nobody},
 {allow_visitor_status,true},
 {allow_visitor_nickchange,true},
 {public,false},
 {public_list,true},
 {persistent,true},
 {moderated,false},
 {captcha_protected,false},
 {members_by_default,true},
 {members_only,true},
 {allow_user_invites,false},
 {password_protected,true},
 {captcha_protected,false},
 {password,<<"s3cret">>},
 {anonymous,false},
 {logging,false},
 {max_users,50},
 {allow_voice_requests,true},
 {allow_subscription,false},
 {mam,true},
 {presence_broadcast,[moderator,participant,visitor]},
 {voice_request_min_interval,1800},
 {vcard,<<>>},
 {vcard_xupdate,undefined},
 {pubsub,<<>>},
 {enable_hats,false},
 {lang,<<"en">>},
 {captcha_whitelist,[]},
 {affiliations,[{{<<"alice">>,<<"example.org">>,<<>>},owner},
                {{<<"bob">>,<<"example.org">>,<<>>},{admin,<<>>}},
                {{<<"carol">>,<<"example.org">>,<<>>},{member,<<"regular">>}},
                {{<<"spam">>,<<"bad.example">>,<<>>},{outcast,<<"sp\xc3\xa4m">>}},
                {{<<>>,<<"evil.example">>,<<>>},outcast},
                {{<<"dave">>,<<"example.org">>,<<>>},none}]},
 {roles,[]},
 {subject,[{text,<<>>,<<"Welcome \xe2\x98\xba">>}]},
 {subject_author,<<"alice">>},
 {hats_users,[]},
 {hibernation_time,undefined},
 {subscribers,[]}]"""


def test_a_configured_room_maps_field_by_field() -> None:
    opts = parse_term(OPTS_2301.encode("latin-1"))
    parts = convert_room(room_jid(b"cafe", b"conference.example.org"), opts, "line 7")
    assert parts.room == Room(
        jid="cafe@conference.example.org",
        title="Café talk",
        description="The forum's room",
        public=False,
        persistent=True,
        members_only=True,
        moderated=False,
        password="s3cret",
        whois="anyone",
        change_subject=False,
        allow_pm="participants",
        max_occupants=50,
        subject="Welcome ☺",
        subject_nick="alice",
    )
    room = "cafe@conference.example.org"
    assert parts.affiliations == [
        Affiliation(room, "alice@example.org", "owner"),
        Affiliation(room, "bob@example.org", "admin"),
        Affiliation(room, "carol@example.org", "member", "regular"),
        Affiliation(room, "spam@bad.example", "outcast", "späm"),
        Affiliation(room, "evil.example", "outcast"),
    ]
    assert parts.problems == []  # every other option has ejabberd's default


def test_defaults_and_older_shapes() -> None:
    # a room created before 'subject' became #text{} records: a binary; no other options
    opts = parse_term(b'[{subject,<<"old">>},{max_users,none},{anonymous,true}]')
    parts = convert_room("r@muc.example.org", opts, "x")
    assert parts.room == Room(
        jid="r@muc.example.org",
        persistent=False,
        moderated=True,
        change_subject=True,
        subject="old",
        max_occupants=None,
    )
    # pre-binary ejabberd kept strings (UTF-8 bytes in a list)
    opts = parse_term(b'[{title,"Caf\xc3\xa9"},{subject,[{text,<<"de">>,<<"Hallo">>}]}]')
    assert convert_room("r@m", opts, "x").room.title == "Café"  # type: ignore[union-attr]
    assert convert_room("r@m", opts, "x").room.subject == "Hallo"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("opts", "expected"),
    [
        ("[{allow_private_messages,false}]", "none"),
        ("[{allow_private_messages,true},{allow_private_messages_from_visitors,anyone}]", "anyone"),
        ("[{allow_private_messages_from_visitors,nobody}]", "participants"),
        ("[{allow_private_messages_from_visitors,moderators}]", "participants"),
    ],
)
def test_private_messages(opts: str, expected: str) -> None:
    parts = convert_room("r@m", parse_term(opts), "x")
    assert parts.room is not None and parts.room.allow_pm == expected
    assert len(parts.problems) == (1 if "moderators" in opts else 0)


def test_what_does_not_move_is_reported_not_dropped() -> None:
    opts = parse_term(
        b"[{password_protected,true},{password,<<>>},{members_by_default,false},"
        b'{roles,[{{<<"u">>,<<"s">>,<<>>},participant}]},{vcard,<<"<vCard/>">>},'
        b'{frobnicate,1},{affiliations,[{{<<"a">>,<<"s">>,<<"res">>},member},'
        b'{{<<"b">>,<<"s">>,<<>>},king},{bad}]}]'
    )
    parts = convert_room("r@m", opts, "line 9")
    assert parts.room is not None and parts.room.password is None
    texts = sorted((p.kind.value, p.text) for p in parts.problems)
    assert all(p.where == "line 9" for p in parts.problems)
    assert texts == sorted(
        [
            ("rooms", "room r@m: password_protected with an empty password: imported unprotected"),
            ("rooms", "room r@m: members_by_default = false not carried over"),
            ("rooms", "room r@m: roles (1 entries) not carried over"),
            ("rooms", "room r@m: vcard (8 bytes) not carried over"),
            ("rooms", "room r@m: unknown option frobnicate"),
            ("affiliations", "affiliation of the full JID a@s/res: given to a@s"),
            ("affiliations", "unknown affiliation king of b@s"),
            (
                "affiliations",
                "malformed affiliation {bad}: not enough values to unpack (expected 2, got 1)",
            ),
        ]
    )
    assert [a.jid for a in parts.affiliations] == ["a@s"]


@pytest.mark.parametrize(
    "opts",
    ["{title}", "[{title,1}]", "[{public,yes}]", "[{max_users,-1}]", "[{subject,[x]}]", "[x]"],
)
def test_a_broken_room_is_one_problem(opts: str) -> None:
    parts = convert_room("r@m", parse_term(opts), "line 3")
    assert parts.room is None and parts.affiliations == []
    assert [(p.kind, p.where) for p in parts.problems] == [(Kind.ROOMS, "line 3")]


def test_a_password_is_not_shown_in_problems() -> None:
    parts = convert_room("r@m", parse_term("[{password_protected,true},{password,42}]"), "x")
    assert parts.room is None and "42" not in parts.problems[0].text


def test_sql_opts_as_bytes_or_as_a_utf8_decoded_str() -> None:
    raw = OPTS_2301.encode("latin-1")  # what list_to_binary(io_lib:print(Opts)) stored
    for value in (raw, raw.decode("utf-8")):
        parts = convert_room("cafe@c", parse_sql_opts(value), "muc_room cafe")
        assert parts.room is not None and parts.room.title == "Café talk"
