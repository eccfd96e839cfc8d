"""XEP-0363 HTTP file upload: the pure rules (xmppd.upload.policy: names, types, slot
requests, serving headers), the ``[upload]`` section, and the service
(xmppd.services.upload) on the router over a real SQLite database: disco, slots, the
PUT checks, the quota and the expiry sweep.

Over real sockets with slixmpp and httpx: tests/integration/test_upload_slixmpp.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from lxml import etree

from tests.unit.routing_helpers import DOMAIN, Client, Harness, error_condition, running_harness
from xmppd.config import Config, ServerConfig
from xmppd.jid import JID
from xmppd.services.lifecycle import ServiceContext
from xmppd.services.upload import UploadService, public_base
from xmppd.settings import ConfigError
from xmppd.storage.models import upload_files
from xmppd.upload import policy
from xmppd.upload.config import UploadConfig
from xmppd.xml.errors import StanzaError

NS = policy.NS
U = "{%s}" % NS
HOST = f"upload.{DOMAIN}"


# ------------------------------------------------------------------ names
@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("cat.png", "cat.png"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("%2e%2e%2fsecret", "2e_2e_2fsecret"),
        ("a\x00b.txt", "ab.txt"),
        ("evil\u202egnp.exe", "evilgnp.exe"),  # the right-to-left override is dropped
        ("résumé final.pdf", "résumé_final.pdf"),
        ("ﬁle.png", "file.png"),  # NFKC: the ligature is two letters
        (".htaccess", "htaccess"),
        ("...", "file"),
        ("/", "file"),
        ("   ", "file"),
        ("a<b>c|d?.txt", "a_b_c_d_.txt"),
    ],
)
def test_file_names_are_sanitised(raw: str, name: str) -> None:
    assert policy.sanitize_filename(raw) == name


def test_an_overlong_name_keeps_its_extension() -> None:
    name = policy.sanitize_filename("x" * 1000 + ".jpeg")
    assert len(name) <= policy.NAME_MAX and name.endswith(".jpeg")
    assert len(policy.sanitize_filename("y" * 1000)) == policy.NAME_MAX


def test_urls_quote_the_name_and_keep_the_secret_out_of_the_get_url() -> None:
    assert policy.url_path("I" * 24, "été 1.png") == "I" * 24 + "/%C3%A9t%C3%A9%201.png"
    assert policy.url_path("I" * 24, "a.png", "S" * 43) == "I" * 24 + "/" + "S" * 43 + "/a.png"


# ------------------------------------------------------------------ types
@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        (None, "application/octet-stream"),
        ("", "application/octet-stream"),
        ("Image/PNG", "image/png"),
        ("text/plain; charset=UTF-8", "text/plain"),
        ("application/vnd.oasis.opendocument.text", "application/vnd.oasis.opendocument.text"),
    ],
)
def test_content_types_are_normalised(raw: str | None, normal: str) -> None:
    assert policy.normalise_type(raw) == normal


@pytest.mark.parametrize("raw", ["png", "image/", "/png", "image/png/x", "a b/c", "x" * 300])
def test_odd_content_types_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        policy.normalise_type(raw)


@pytest.mark.parametrize(
    ("ctype", "served", "kind"),
    [
        ("image/png", "image/png", "inline"),
        ("image/jpeg", "image/jpeg", "inline"),
        ("image/webp", "image/webp", "inline"),
        ("image/svg+xml", "application/octet-stream", "attachment"),
        ("text/html", "application/octet-stream", "attachment"),
        ("application/xhtml+xml", "application/octet-stream", "attachment"),
        ("application/xml", "application/octet-stream", "attachment"),
        ("application/rss+xml", "application/octet-stream", "attachment"),
        ("text/javascript", "application/octet-stream", "attachment"),
        ("text/x-javascript", "application/octet-stream", "attachment"),
        ("application/x-javascript", "application/octet-stream", "attachment"),
        ("text/css", "application/octet-stream", "attachment"),
        ("text/html+x", "application/octet-stream", "attachment"),
        ("application/json", "application/octet-stream", "attachment"),
        ("image/bmp", "image/bmp", "attachment"),
        ("audio/ogg", "audio/ogg", "attachment"),
        (
            "application/vnd.oasis.opendocument.text",
            "application/vnd.oasis.opendocument.text",
            "attachment",
        ),
        ("text/csv", "text/csv; charset=utf-8", "attachment"),
        ("text/plain", "text/plain; charset=utf-8", "attachment"),
        ("application/pdf", "application/pdf", "attachment"),
        ("video/mp4", "video/mp4", "attachment"),
    ],
)
def test_only_plain_images_are_inline_and_active_documents_are_bytes(
    ctype: str, served: str, kind: str
) -> None:
    headers = dict(policy.file_headers(ctype, "n.bin", 12, '"e"', 60))
    assert headers["content-type"] == served
    assert headers["content-disposition"].split(";")[0] == kind
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-security-policy"] == "sandbox; default-src 'none'"
    assert headers["content-length"] == "12" and headers["etag"] == '"e"'
    assert headers["cache-control"] == "public, max-age=60, immutable"


def test_content_disposition_has_an_ascii_fallback_and_the_utf8_name() -> None:
    value = policy.disposition("application/pdf", 'été "x".pdf')
    assert value == (
        "attachment; filename=\"_t_ _x_.pdf\"; filename*=UTF-8''%C3%A9t%C3%A9%20%22x%22.pdf"
    )


@pytest.mark.parametrize(
    ("header", "wanted"),
    [
        (None, None),
        ("bytes=0-99", (0, 99)),
        ("bytes=10-", (10, 999)),
        ("bytes=-100", (900, 999)),
        ("bytes=-5000", (0, 999)),
        ("bytes=990-5000", (990, 999)),
        ("Bytes = 1-1", (1, 1)),
        ("bytes=1000-", policy.UNSATISFIABLE),
        ("bytes=-0", policy.UNSATISFIABLE),
        ("bytes=5-1", None),
        ("bytes=0-1,5-9", None),  # several ranges: the whole file
        ("items=0-1", None),
        ("bytes=a-b", None),
        ("bytes=-", None),
        ("bytes=" + "9" * 40 + "-", None),
    ],
)
def test_one_byte_range_or_the_whole_file(
    header: str | None, wanted: tuple[int, int] | None
) -> None:
    assert policy.byte_range(header, 1000) == wanted


# --------------------------------------------------------------- requests
def request(**attrs: str) -> etree._Element:
    return etree.Element(U + "request", attrs)


def test_a_slot_without_a_type_is_served_as_bytes() -> None:
    asked = policy.parse_request(request(filename="x.html", size="5"), 10)
    assert asked.content_type == ""
    headers = dict(policy.file_headers("", "x.html", 5, '"e"', 1))
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-disposition"].startswith("attachment;")


def test_a_request_parses_to_a_sanitised_slot() -> None:
    asked = policy.parse_request(
        request(filename="../a b.PNG", size="10", **{"content-type": "Image/Png"}), 10
    )
    assert asked == policy.SlotRequest("a_b.PNG", 10, "image/png")


@pytest.mark.parametrize(
    "attrs",
    [
        {"size": "10"},
        {"filename": " ", "size": "10"},
        {"filename": "a"},
        {"filename": "a", "size": "ten"},
        {"filename": "a", "size": "0"},
        {"filename": "a", "size": "-5"},
        {"filename": "a", "size": "10", "content-type": "no type"},
    ],
)
def test_bad_requests_are_bad_request(attrs: dict[str, str]) -> None:
    with pytest.raises(StanzaError) as caught:
        policy.parse_request(request(**attrs), 100)
    assert caught.value.condition == "bad-request"


def test_a_file_too_large_gets_not_acceptable_with_the_limit() -> None:
    with pytest.raises(StanzaError) as caught:
        policy.parse_request(request(filename="a", size="101"), 100)
    err = caught.value
    assert (err.condition, err.type) == ("not-acceptable", "modify")
    assert err.app is not None and err.app.tag == U + "file-too-large"
    assert err.app.findtext(U + "max-file-size") == "100"


# ----------------------------------------------------------------- config
@pytest.mark.parametrize(
    "change",
    [
        {"max_file_size": 0},
        {"slot_ttl": 0},
        {"requests_per_minute": 0},
        {"expire_days": -1},
        {"quota_per_user": 10, "max_file_size": 100},
        {"directory": " "},
        {"public_url": "ftp://x"},
        {"public_url": "https://files.example.org/"},
        {"public_url": "https://u@files.example.org"},
    ],
)
def test_bad_upload_settings_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        dataclasses.replace(UploadConfig(), **change).validate()


def test_the_public_base_falls_back_from_upload_to_http_to_the_listener() -> None:
    config = Config()
    config.server.domain = "chat.example.org"
    assert public_base(config) == "http://chat.example.org:5280"
    config.http.host, config.http.path_prefix = "127.0.0.1", "/xmpp"
    assert public_base(config) == "http://127.0.0.1:5280/xmpp"
    config.http.public_url = "https://forum.example.org/xmpp"
    assert public_base(config) == "https://forum.example.org/xmpp"
    config.upload.public_url = "https://files.example.org"
    assert public_base(config) == "https://files.example.org"


# ---------------------------------------------------------------- service
@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_harness(tmp_path) as harness:
        yield harness


def install(h: Harness, tmp_path: Path, **settings: object) -> UploadService:
    config = Config(server=ServerConfig(domain=DOMAIN, data_dir=str(tmp_path)))
    config.upload = dataclasses.replace(UploadConfig(), **settings)
    service = UploadService.build(ServiceContext(config, h.router, h.adb))
    assert service is not None
    return service


async def ask_slot(
    client: Client, name: str, size: int, ctype: str = "image/png"
) -> etree._Element:
    await client.send(
        f'<iq type="get" id="s1" to="{HOST}"><request xmlns="{NS}" filename="{name}" '
        f'size="{size}" content-type="{ctype}"/></iq>'
    )
    (reply,) = [el for el in client.take() if el.get("id") == "s1"]
    return reply


def urls(reply: etree._Element) -> tuple[str, str]:
    put, get = reply.find(f"{U}slot/{U}put"), reply.find(f"{U}slot/{U}get")
    assert put is not None and get is not None
    return put.get("url", ""), get.get("url", "")


def ids(url: str) -> list[str]:
    return url.split("/upload/", 1)[1].split("/")


async def test_disco_lists_the_service_and_its_info_has_the_form(
    h: Harness, tmp_path: Path
) -> None:
    install(h, tmp_path, max_file_size=1234)
    assert h.router.disco_items[HOST] == "HTTP file upload"
    alice = await h.connect("alice@example.org/a")
    await alice.send(
        f'<iq type="get" id="d1" to="{HOST}"><query xmlns="http://jabber.org/protocol/disco#info"/></iq>'
    )
    (reply,) = alice.take()
    assert reply.get("type") == "result" and reply.get("from") == HOST
    q = "{http://jabber.org/protocol/disco#info}"
    identity = reply.find(f"{q}query/{q}identity")
    assert identity is not None and (identity.get("category"), identity.get("type")) == (
        "store",
        "file",
    )
    assert NS in [f.get("var") for f in reply.iter(q + "feature")]
    fields = {
        f.get("var"): f.findtext("{jabber:x:data}value") for f in reply.iter("{jabber:x:data}field")
    }
    assert fields == {"FORM_TYPE": NS, "max-file-size": "1234"}
    await alice.send(f'<iq type="set" id="d2" to="{HOST}"><query xmlns="jabber:iq:version"/></iq>')
    assert error_condition(alice.take()[0]) == "service-unavailable"


async def test_a_slot_is_stored_and_the_put_checks_follow_it(h: Harness, tmp_path: Path) -> None:
    service = install(h, tmp_path, slot_ttl=60)
    alice = await h.connect("alice@example.org/a")
    put, get = urls(await ask_slot(alice, "a.png", 100))
    file_id, secret, name = ids(put)
    assert ids(get) == [file_id, name] and secret not in get
    assert policy.FILE_ID.fullmatch(file_id) and policy.PUT_SECRET.fullmatch(secret)
    with h.db.engine.connect() as conn:
        (row,) = conn.execute(sa.select(upload_files)).all()
    assert row.owner == "alice@example.org" and row.size == 100 and secret not in row.put_hash
    check = service.check_put
    assert (await check(file_id, secret, 100, "image/png"))[0] == 0
    assert (await check(file_id, secret, None, "image/png"))[0] == 0  # chunked: counted later
    assert (await check(file_id, secret, 101, "image/png"))[0] == 413
    assert (await check(file_id, secret, 99, "image/png"))[0] == 400
    assert (await check(file_id, secret, 100, "image/gif"))[0] == 415
    assert (await check(file_id, secret, 100, None))[0] == 415
    assert (await check(file_id, "x" * 43, 100, "image/png"))[0] == 403
    assert (await check("y" * 24, secret, 100, "image/png"))[0] == 404
    assert (await check("../../etc/passwd", secret, 100, "image/png"))[0] == 404
    service.receiving.add(file_id)
    assert (await check(file_id, secret, 100, "image/png"))[0] == 409
    service.receiving.clear()
    row_ = (await check(file_id, secret, 100, "image/png"))[1]
    assert row_ is not None and await service.lookup(file_id) is None  # not stored yet
    assert await service.stored(row_) and not await service.stored(row_)
    assert await service.lookup(file_id) is not None
    assert (await check(file_id, secret, 100, "image/png"))[0] == 409
    await alice.send(
        f'<iq type="get" id="s1" to="{HOST}"><request xmlns="{NS}" filename="b" size="5"/></iq>'
    )
    (reply,) = alice.take()
    untyped_id, untyped_secret, _ = ids(urls(reply)[0])
    for any_type in ("text/html", None, "not a type"):  # none named in the slot: §6
        assert (await check(untyped_id, untyped_secret, 5, any_type))[0] == 0
    files = upload_files.c
    with h.db.engine.begin() as conn:
        granted = conn.execute(
            sa.select(files.created_at).where(files.file_id == untyped_id)
        ).scalar_one()
        conn.execute(
            upload_files.update()
            .where(files.file_id == untyped_id)
            .values(created_at=granted - timedelta(seconds=61))
        )
    assert (await check(untyped_id, untyped_secret, 5, None))[0] == 410  # slot_ttl is over


async def test_refusals_store_nothing(h: Harness, tmp_path: Path) -> None:
    install(h, tmp_path, max_file_size=100, quota_per_user=150, requests_per_minute=2)
    alice = await h.connect("alice@example.org/a")
    too_big = await ask_slot(alice, "a", 101)
    assert error_condition(too_big) == "not-acceptable"
    assert too_big.find(f"{{jabber:client}}error/{U}file-too-large/{U}max-file-size").text == "100"
    assert error_condition(await ask_slot(alice, "a", 0)) == "bad-request"
    assert urls(await ask_slot(alice, "a", 100))
    quota = await ask_slot(alice, "b", 60)
    assert error_condition(quota) == "resource-constraint"
    assert quota.find("{jabber:client}error").get("type") == "wait"
    rate = await ask_slot(alice, "c", 1)
    assert error_condition(rate) == "resource-constraint"
    assert rate.find(f"{{jabber:client}}error/{U}retry").get("stamp", "").endswith("Z")
    with h.db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(upload_files)).scalar() == 1


async def test_only_local_accounts_get_slots(h: Harness, tmp_path: Path) -> None:
    service = install(h, tmp_path)
    iq = etree.fromstring(
        f'<iq xmlns="jabber:client" type="get" id="x" from="eve@evil.example/e" to="{HOST}">'
        f'<request xmlns="{NS}" filename="a" size="1"/></iq>'
    )
    with pytest.raises(StanzaError) as caught:
        await service._iq(iq, JID.parse(HOST), None)
    assert caught.value.condition == "not-allowed"


async def test_the_sweep_deletes_unused_slots_and_old_files(h: Harness, tmp_path: Path) -> None:
    service = install(h, tmp_path, slot_ttl=60, expire_days=2)
    alice = await h.connect("alice@example.org/a")
    kept, old, unused, fresh = [ids(urls(await ask_slot(alice, n, 10))[0]) for n in "abcd"]
    for file_id, secret, _ in (kept, old):
        row = (await service.check_put(file_id, secret, 10, "image/png"))[1]
        assert row is not None
        service.path_of(file_id).write_bytes(b"0123456789")
        assert await service.stored(row)
    files = upload_files.c

    def shift(file_id: str, column: sa.Column[Any], by: timedelta) -> None:
        with h.db.engine.begin() as conn:
            value = conn.execute(sa.select(column).where(files.file_id == file_id)).scalar_one()
            conn.execute(
                upload_files.update().where(files.file_id == file_id).values({column: value - by})
            )

    shift(old[0], files.stored_at, timedelta(days=3))  # stored three days ago: expired
    shift(unused[0], files.created_at, timedelta(minutes=2))  # never PUT within slot_ttl
    shift(kept[0], files.stored_at, timedelta(days=1))  # one day old: kept
    assert await service.sweep() == 2
    with h.db.engine.connect() as conn:
        left = {r.file_id for r in conn.execute(sa.select(files.file_id))}
    assert left == {kept[0], fresh[0]}
    assert service.path_of(kept[0]).exists() and not service.path_of(old[0]).exists()


async def test_the_host_may_not_be_taken_twice(h: Harness, tmp_path: Path) -> None:
    install(h, tmp_path)
    with pytest.raises(ConfigError, match=r"upload\.host"):
        install(h, tmp_path)
    with pytest.raises(ConfigError, match=r"upload\.host"):
        install(h, tmp_path, host=DOMAIN)


async def test_a_second_put_during_the_first_is_a_conflict_and_spoils_nothing(
    h: Harness, tmp_path: Path
) -> None:
    import trio

    from xmppd.http.upload import UploadRoutes

    service = install(h, tmp_path)
    routes = UploadRoutes(service, read_timeout=5)
    alice = await h.connect("alice@example.org/a")
    file_id, secret, name = ids(urls(await ask_slot(alice, "a.png", 10))[0])
    go, second_done = trio.Event(), trio.Event()
    statuses: dict[str, int] = {}

    def body(wait: bool) -> Any:
        async def receive() -> dict[str, Any]:
            if wait:
                await go.wait()
            return {"type": "http.request", "body": b"0123456789", "more_body": False}

        return receive

    async def put(who: str, wait: bool) -> None:
        headers = {"content-type": "image/png", "content-length": "10"}
        statuses[who] = await routes._put(body(wait), f"{file_id}/{secret}/{name}", headers)
        if who == "second":
            second_done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(put, "first", True)
        nursery.start_soon(put, "second", False)
        with trio.fail_after(5):
            await second_done.wait()
        go.set()  # the first PUT's body comes only after the second has ended
    assert sorted(statuses.values()) == [201, 409]  # whichever check came back first wins
    assert service.path_of(file_id).read_bytes() == b"0123456789"


async def test_a_slot_that_would_fill_the_disk_is_refused(
    h: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = install(h, tmp_path, min_free_space=1000)
    monkeypatch.setattr(service, "_free_space", lambda: 1500)
    alice = await h.connect("alice@example.org/a")
    assert urls(await ask_slot(alice, "a", 500))  # leaves 1000
    full = await ask_slot(alice, "b", 501)
    assert error_condition(full) == "resource-constraint"
    assert full.find("{jabber:client}error").get("type") == "wait"
    with h.db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(upload_files)).scalar() == 1
    assert install(h, tmp_path / "x", host="files.example.org")._free_space() > 0  # the real one


async def test_no_service_without_the_http_port_or_when_switched_off(
    h: Harness, tmp_path: Path
) -> None:
    config = Config(server=ServerConfig(domain=DOMAIN, data_dir=str(tmp_path)))
    config.http.enabled = False
    assert UploadService.build(ServiceContext(config, h.router, h.adb)) is None
    config.http.enabled, config.upload.enabled = True, False
    assert UploadService.build(ServiceContext(config, h.router, h.adb)) is None
    assert HOST not in h.router.disco_items and HOST not in h.router.services
