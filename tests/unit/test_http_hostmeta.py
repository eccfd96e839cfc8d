"""XEP-0156 discovery documents (xmppd.http.hostmeta): what they announce, from where.

Over real HTTP (the routing, the trusted-proxy scheme, CORS): tests/integration/test_http.py.
"""

from __future__ import annotations

import json

import pytest
from lxml import etree

from xmppd.config import load_config
from xmppd.http import hostmeta
from xmppd.http.hostmeta import BOSH_REL, WEBSOCKET_REL, XRD_NS, Link


def _xrd_links(body: bytes) -> list[tuple[str, str]]:
    root = etree.fromstring(body)
    assert root.tag == "{%s}XRD" % XRD_NS
    return [(el.get("rel"), el.get("href")) for el in root.iter("{%s}Link" % XRD_NS)]


def test_links_follow_the_scheme_and_prefix() -> None:
    assert hostmeta.links("https://forum.example/xmpp", websocket=True, bosh=True) == [
        Link(WEBSOCKET_REL, "wss://forum.example/xmpp/xmpp-websocket"),
        Link(BOSH_REL, "https://forum.example/xmpp/http-bind"),
    ]
    assert hostmeta.links("http://127.0.0.1:5280", websocket=True, bosh=True) == [
        Link(WEBSOCKET_REL, "ws://127.0.0.1:5280/xmpp-websocket"),
        Link(BOSH_REL, "http://127.0.0.1:5280/http-bind"),
    ]


def test_only_enabled_transports_are_announced() -> None:
    base = "https://chat.example"
    assert [x.rel for x in hostmeta.links(base, websocket=False, bosh=True)] == [BOSH_REL]
    assert [x.rel for x in hostmeta.links(base, websocket=True, bosh=False)] == [WEBSOCKET_REL]
    response = hostmeta.answer(hostmeta.HOST_META_PATH, "GET", base, websocket=False, bosh=False)
    assert response.status == 404


def test_xrd_and_jrd_documents() -> None:
    items = hostmeta.links("https://chat.example", websocket=True, bosh=True)
    xrd = hostmeta.answer(hostmeta.HOST_META_PATH, "GET", "https://chat.example",
                          websocket=True, bosh=True)  # fmt: skip
    assert xrd.status == 200 and xrd.content_type.startswith("application/xrd+xml")
    assert xrd.body.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    assert _xrd_links(xrd.body) == [(x.rel, x.href) for x in items]
    jrd = hostmeta.answer(hostmeta.HOST_META_JSON_PATH, "GET", "https://chat.example",
                          websocket=True, bosh=True)  # fmt: skip
    assert jrd.status == 200 and jrd.content_type == "application/json"
    assert json.loads(jrd.body) == {"links": [{"rel": x.rel, "href": x.href} for x in items]}
    for response in (xrd, jrd):
        headers = dict(response.headers)
        assert headers["access-control-allow-origin"] == "*"
        assert "max-age" in headers["cache-control"]


def test_hrefs_are_escaped_in_xml() -> None:
    body = hostmeta.xrd([Link(BOSH_REL, "https://a.example/x'\"<&>")])
    assert _xrd_links(body) == [(BOSH_REL, "https://a.example/x'\"<&>")]


@pytest.mark.parametrize(
    ("secure", "host", "prefix", "expected"),
    [
        (False, "localhost:5280", "", "http://localhost:5280"),
        (True, "Forum.Example.org", "/xmpp", "https://forum.example.org/xmpp"),
        (True, "[2001:db8::1]:5443", "", "https://[2001:db8::1]:5443"),
        (False, "192.0.2.7", "", "http://192.0.2.7"),
    ],
)
def test_request_base(secure: bool, host: str, prefix: str, expected: str) -> None:
    assert hostmeta.request_base(secure, host, prefix) == expected


@pytest.mark.parametrize(
    "host",
    [None, "", "evil.example/path", "a b", "a.example:port", "x@evil.example", '"><x',
     "a.example:80:80", "-bad.example", "a" * 300],
)  # fmt: skip
def test_a_host_header_that_is_no_host_is_refused(host: str | None) -> None:
    assert hostmeta.request_base(True, host, "") is None
    response = hostmeta.answer(hostmeta.HOST_META_PATH, "GET", None, websocket=True, bosh=True)
    assert response.status == 400


def test_methods() -> None:
    def status(method: str) -> int:
        return hostmeta.answer(
            hostmeta.HOST_META_PATH, method, "https://a.example", websocket=True, bosh=True
        ).status

    assert status("HEAD") == 200
    assert status("OPTIONS") == 204
    assert status("POST") == 405


def test_public_url_is_accepted() -> None:
    assert load_config(environ={}).http.public_url == ""
    for url in ("https://forum.example.org/xmpp", "http://127.0.0.1:5280", "https://[::1]:8443"):
        config = load_config(environ={}, overrides={"http": {"public_url": url}})
        assert config.http.public_url == url
