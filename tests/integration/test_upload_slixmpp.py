"""XEP-0363 HTTP file upload against a real ``xmppd serve``: slixmpp's own xep_0363 plugin
finds the service, asks for a slot and PUTs the file as a client does; elsewhere slixmpp asks
for the slot over a real c2s socket and httpx PUTs and GETs on the HTTP port (to look at every
status and header), and raw sockets cut a PUT mid-body. Bad input everywhere gets its error
and stores nothing."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree

import httpx
import pytest
import sqlalchemy as sa
from slixmpp.exceptions import IqError

from tests.slix import Client, login, run
from tests.xmppd_process import XmppdProcess, running_server

pytestmark = pytest.mark.integration

NS = "urn:xmpp:http:upload:0"
HOST = "upload.localhost"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(3000)


async def slot(client: Client, filename: str, size: int | str, ctype: str | None) -> Any:
    """The slot's (put, get) URLs, or the IqError the service answered with."""
    iq = client.make_iq_get(ito=HOST)
    request = ElementTree.Element(f"{{{NS}}}request", filename=filename, size=str(size))
    if ctype is not None:
        request.set("content-type", ctype)
    iq.append(request)
    try:
        result = await iq.send(timeout=5)
    except IqError as exc:
        return exc
    put, get = (
        result.xml.find(f"{{{NS}}}slot/{{{NS}}}put"),
        result.xml.find(f"{{{NS}}}slot/{{{NS}}}get"),
    )
    assert put is not None and get is not None
    return put.get("url"), get.get("url")


def rows(server: XmppdProcess) -> list[Any]:
    with server.database().engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT file_id, stored_at FROM upload_files")))


def stored_files(server: XmppdProcess) -> list[str]:
    return sorted(p.name for p in (server.data_dir / "upload").iterdir())


def test_disco_slot_put_and_get_back_byte_for_byte(tmp_path: Path) -> None:
    with running_server(tmp_path, users=("alice",), upload={"max_file_size": 5000}) as server:

        async def scenario() -> dict[str, Any]:
            out: dict[str, Any] = {}
            alice = await login(server, "alice@localhost/a")
            items = await alice.plugin["xep_0030"].get_items(jid="localhost")
            out["items"] = [i[0] for i in items["disco_items"]["items"]]
            info = await alice.plugin["xep_0030"].get_info(jid=HOST)
            out["identities"] = [i[:2] for i in info["disco_info"]["identities"]]
            out["features"] = info["disco_info"]["features"]
            form = info.xml.find("{http://jabber.org/protocol/disco#info}query/{jabber:x:data}x")
            out["form"] = {
                f.get("var"): f.findtext("{jabber:x:data}value")
                for f in form.iter("{jabber:x:data}field")
            }
            put, get = await slot(alice, "cat picture.png", len(PNG), "image/png")
            out["urls"] = (put, get)
            async with httpx.AsyncClient(timeout=10) as http:
                early = await http.get(get)
                out["before_put"] = early.status_code
                answer = await http.put(put, content=PNG, headers={"content-type": "image/png"})
                out["put"] = answer.status_code
                out["again"] = (
                    await http.put(put, content=PNG, headers={"content-type": "image/png"})
                ).status_code
                got = await http.get(get)
                out["get"] = (got.status_code, got.content == PNG, dict(got.headers))
                head = await http.head(get)
                out["head"] = (head.status_code, head.content, head.headers["content-length"])
                etag = got.headers["etag"]
                out["304"] = (await http.get(get, headers={"if-none-match": etag})).status_code
                part = await http.get(get, headers={"range": "bytes=100-199"})
                out["206"] = (part.status_code, part.content, part.headers["content-range"])
                past = await http.get(get, headers={"range": f"bytes={len(PNG)}-"})
                out["416"] = (past.status_code, past.headers["content-range"])
                other = await http.get(get, headers={"range": "bytes=0-9", "if-range": '"x"'})
                out["if-range"] = (other.status_code, len(other.content))
            alice.disconnect()
            return out

        out = run(scenario)
        assert HOST in out["items"]
        assert ("store", "file") in out["identities"]
        assert NS in out["features"]
        assert out["form"] == {"FORM_TYPE": NS, "max-file-size": "5000"}
        put, get = out["urls"]
        assert put != get and urlsplit(put).path.startswith("/upload/")
        assert get.endswith("/cat_picture.png")
        assert out["before_put"] == 404  # a slot is not a file
        assert out["put"] == 201 and out["again"] == 409
        status, same, headers = out["get"]
        assert status == 200 and same
        assert headers["content-type"] == "image/png"
        assert headers["content-length"] == str(len(PNG))
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["content-security-policy"].startswith("sandbox; default-src 'none'")
        assert headers["content-disposition"].startswith("inline; ")
        assert "max-age=" in headers["cache-control"]
        assert out["head"] == (200, b"", str(len(PNG)))
        assert out["304"] == 304
        assert out["206"] == (206, PNG[100:200], f"bytes 100-199/{len(PNG)}")
        assert out["416"] == (416, f"bytes */{len(PNG)}")
        assert out["if-range"] == (200, len(PNG))
        assert [r.stored_at is not None for r in rows(server)] == [True]
        assert len(stored_files(server)) == 1 and stored_files(server)[0] in get


def test_slixmpp_uploads_with_its_own_plugin(tmp_path: Path) -> None:
    """What a client does: discover the service, request a slot, PUT (slixmpp's aiohttp)."""
    with running_server(tmp_path, users=("alice",)) as server:

        async def scenario() -> tuple[str, bytes, str]:
            alice = await login(server, "alice@localhost/a", plugins=("xep_0363",))
            url = await alice.plugin["xep_0363"].upload_file(
                "holiday.png", size=len(PNG), content_type="image/png", input_file=BytesIO(PNG)
            )
            async with httpx.AsyncClient(timeout=10) as http:
                got = await http.get(url)
            alice.disconnect()
            return url, got.content, got.headers["content-type"]

        url, content, ctype = run(scenario)
        assert urlsplit(url).path.startswith("/upload/") and url.endswith("/holiday.png")
        assert content == PNG and ctype == "image/png"
        assert [r.stored_at is not None for r in rows(server)] == [True]


def test_html_and_svg_are_served_as_sandboxed_attachments(tmp_path: Path) -> None:
    page = b"<html><script>alert(document.cookie)</script></html>"
    svg = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"
    with running_server(tmp_path, users=("alice",)) as server:

        async def scenario() -> list[dict[str, str]]:
            alice = await login(server, "alice@localhost/a")
            seen = []
            async with httpx.AsyncClient(timeout=10) as http:
                for name, body, ctype, put_type in (
                    ("x.html", page, "text/html", "text/html"),
                    ("y.svg", svg, "image/svg+xml", "image/svg+xml"),
                    ("z.htm", page, None, "text/html"),  # the slot named no type (§6)
                ):
                    put, get = await slot(alice, name, len(body), ctype)
                    assert (
                        await http.put(put, content=body, headers={"content-type": put_type})
                    ).status_code == 201
                    got = await http.get(get)
                    assert got.content == body
                    seen.append(dict(got.headers))
            alice.disconnect()
            return seen

        seen = run(scenario)
        assert len(seen) == 3
        for headers in seen:
            assert headers["content-type"] == "application/octet-stream"
            assert headers["content-disposition"].startswith("attachment; ")
            assert headers["content-security-policy"].startswith("sandbox; default-src 'none'")
            assert headers["x-content-type-options"] == "nosniff"


def test_bad_slot_requests_get_the_xep_errors_and_the_quota_survives_a_restart(
    tmp_path: Path,
) -> None:
    limits = {"max_file_size": 2000, "quota_per_user": 3000, "requests_per_minute": 6}
    with running_server(tmp_path, users=("alice", "bob"), upload=limits) as server:

        async def scenario() -> dict[str, Any]:
            out: dict[str, Any] = {}
            alice = await login(server, "alice@localhost/a")
            big = await slot(alice, "big.bin", 2001, None)
            out["big"] = (big.condition, big.etype)
            tl = big.iq.xml.find(f"{{jabber:client}}error/{{{NS}}}file-too-large")
            out["max"] = tl.findtext(f"{{{NS}}}max-file-size") if tl is not None else None
            out["zero"] = (await slot(alice, "a", 0, None)).condition
            out["nan"] = (await slot(alice, "a", "lots", None)).condition
            out["type"] = (await slot(alice, "a", 10, "not a type")).condition
            out["first"] = isinstance(await slot(alice, "a.bin", 2000, None), tuple)
            over = await slot(alice, "b.bin", 1500, None)
            out["quota"] = (over.condition, over.etype)
            out["bob"] = isinstance(
                await slot(bob := await login(server, "bob@localhost/b"), "c.bin", 1500, None),
                tuple,
            )
            alice.disconnect()
            bob.disconnect()
            return out

        out = run(scenario)
        assert out["big"] == ("not-acceptable", "modify") and out["max"] == "2000"
        assert out["zero"] == out["nan"] == out["type"] == "bad-request"
        assert out["first"] and out["quota"] == ("resource-constraint", "wait")
        assert out["bob"]  # the quota is per account
        assert len(rows(server)) == 2
        server.stop()
        server.start()

        async def after_restart() -> tuple[str, str]:
            alice = await login(server, "alice@localhost/a")
            over = await slot(alice, "b.bin", 1500, None)
            rate = []
            for _ in range(8):  # 6 a minute: the burst runs out
                answer = await slot(alice, "tiny", 1, None)
                rate.append(answer if isinstance(answer, tuple) else answer.condition)
            retry = answer.iq.xml.find(f"{{jabber:client}}error/{{{NS}}}retry")
            alice.disconnect()
            assert retry is not None and retry.get("stamp", "").endswith("Z")
            assert "resource-constraint" in rate
            return over.condition, over.etype

        assert run(after_restart) == ("resource-constraint", "wait")


def _raw_put(server: XmppdProcess, path: str, headers: str, body: bytes) -> socket.socket:
    """Send a PUT's head and part of its body; the caller drops the connection."""
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=5)
    sock.sendall(f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode() + body)
    return sock


def test_bad_puts_store_nothing(tmp_path: Path) -> None:
    with running_server(
        tmp_path,
        users=("alice",),
        upload={"slot_ttl": 2},
        http={"cors_origins": ["https://forum.example"]},
    ) as server:

        async def scenario() -> dict[str, Any]:
            out: dict[str, Any] = {}
            alice = await login(server, "alice@localhost/a")
            body = os.urandom(1000)
            put, get = await slot(alice, "f.png", len(body), "image/png")
            file_id, secret = urlsplit(put).path.split("/")[2:4]
            out["file_id"] = file_id
            base = put.split("/upload/")[0] + "/upload/"
            async with httpx.AsyncClient(timeout=10) as http:

                async def try_put(url: str, data: bytes, **headers: str) -> int:
                    headers.setdefault("content-type", "image/png")
                    return (await http.put(url, content=data, headers=headers)).status_code

                out["longer"] = await try_put(put, body + b"x")
                out["shorter"] = await try_put(put, body[:-1])
                out["type"] = await try_put(put, body, **{"content-type": "text/html"})
                out["no_type"] = await try_put(put, body, **{"content-type": ""})
                out["secret"] = await try_put(f"{base}{file_id}/{'A' * 43}/f.png", body)
                out["unknown"] = await try_put(f"{base}{'B' * 24}/{secret}/f.png", body)
                out["origin"] = await try_put(put, body, origin="https://evil.example")

                async def chunks() -> Any:
                    yield body
                    yield b"more than the slot"

                out["chunked"] = (
                    await http.put(put, content=chunks(), headers={"content-type": "image/png"})
                ).status_code
                half = _raw_put(
                    server,
                    urlsplit(put).path,
                    f"Content-Type: image/png\r\nContent-Length: {len(body)}\r\n",
                    body[:400],
                )
                await asyncio.sleep(0.5)
                out["files_while_half"] = stored_files(server)
                out["get_while_half"] = (await http.get(get)).status_code
                out["put_while_half"] = await try_put(put, body)
                half.close()  # the PUT is cut mid-body
                await asyncio.sleep(0.5)
                out["files_after_cut"] = stored_files(server)
                out["get_after_cut"] = (await http.get(get)).status_code
                pre = await http.options(
                    put,
                    headers={
                        "origin": "https://forum.example",
                        "access-control-request-method": "PUT",
                    },
                )
                out["preflight"] = (pre.status_code, dict(pre.headers))
                out["put_ok"] = await try_put(put, body, origin="https://forum.example")
                out["get_ok"] = (await http.get(get)).content == body
                late_put, late_get = await slot(alice, "late.png", len(body), "image/png")
                await asyncio.sleep(2.5)
                out["expired"] = await try_put(late_put, body)
                out["late_get"] = (await http.get(late_get)).status_code
                out["methods"] = [
                    (await http.request(method, get)).status_code for method in ("DELETE", "POST")
                ]
                out["tricks"] = [
                    (await http.get(base + trick)).status_code
                    for trick in (
                        "..%2fxmppd.toml",
                        "%2e%2e/xmppd.toml",
                        "xmppd.sqlite3",
                        f"{file_id}.part",
                        "",
                    )
                ]
            alice.disconnect()
            return out

        out = run(scenario)
        assert out["longer"] == 413 and out["shorter"] == 400
        assert out["type"] == 415 and out["no_type"] == 415
        assert out["secret"] == 403 and out["unknown"] == 404 and out["origin"] == 403
        assert out["chunked"] == 413
        assert out["files_while_half"] == [f"{out['file_id']}.part"]
        assert out["get_while_half"] == 404 and out["put_while_half"] == 409
        assert out["files_after_cut"] == [] and out["get_after_cut"] == 404
        cut = f"event=upload_put_failed file={out['file_id']} status=400"
        assert cut in server.log()  # the cut PUT was received, then thrown away
        status, headers = out["preflight"]
        assert status == 204 and "PUT" in headers["access-control-allow-methods"]
        assert headers["access-control-allow-origin"] == "https://forum.example"
        assert out["put_ok"] == 201 and out["get_ok"]
        # 410 for a lapsed slot, 404 once the sweep (every slot_ttl) has deleted it
        assert out["expired"] in (404, 410) and out["late_get"] == 404
        assert out["tricks"] == [404] * 5 and out["methods"] == [405, 405]
        time.sleep(1.5)  # the sweep (every slot_ttl) removes the unused slot
        assert len(rows(server)) == 1 and len(stored_files(server)) == 1


def test_path_tricks_in_file_names_stay_names(tmp_path: Path) -> None:
    names = [
        "../../etc/passwd",
        "..\\..\\boot.ini",
        "%2e%2e%2fx.png",
        "a\u202egnp.exe",
        "\u00e9t\u00e9.png",
        "x" * 500 + ".png",
        "...",
        "/",
    ]
    with running_server(tmp_path, users=("alice",)) as server:

        async def scenario() -> list[str]:
            alice = await login(server, "alice@localhost/a")
            urls = []
            async with httpx.AsyncClient(timeout=10) as http:
                for name in names:
                    put, get = await slot(alice, name, 3, "text/plain")
                    assert (
                        await http.put(put, content=b"abc", headers={"content-type": "text/plain"})
                    ).status_code == 201
                    got = await http.get(get)
                    assert got.content == b"abc"
                    urls.append(urlsplit(get).path)
            alice.disconnect()
            return urls

        paths = run(scenario)
        tails = [p.split("/", 3)[3] for p in paths]
        assert tails[:4] == ["passwd", "boot.ini", "2e_2e_2fx.png", "agnp.exe"]
        assert tails[4] == "%C3%A9t%C3%A9.png"
        assert len(tails[5]) <= 100 and tails[5].endswith(".png")
        assert tails[6] == tails[7] == "file"
        assert all(p.count("/") == 3 for p in paths)
        files = stored_files(server)
        assert len(files) == len(names) and all(len(f) == 24 for f in files)


def test_two_puts_to_one_slot_at_once_store_one_file(tmp_path: Path) -> None:
    body = os.urandom(3_000_000)
    with running_server(tmp_path, users=("alice",)) as server:

        async def scenario() -> tuple[list[int], bool]:
            alice = await login(server, "alice@localhost/a")
            put, get = await slot(alice, "twice.bin", len(body), "application/octet-stream")
            headers = {"content-type": "application/octet-stream"}
            async with httpx.AsyncClient(timeout=20) as http:
                answers = await asyncio.gather(
                    *(http.put(put, content=body, headers=headers) for _ in range(4))
                )
                same = (await http.get(get)).content == body
            alice.disconnect()
            return sorted(a.status_code for a in answers), same

        statuses, same = run(scenario)
        assert statuses == [201, 409, 409, 409] and same
        assert len(stored_files(server)) == 1


def test_a_put_refused_over_http2_before_its_body_does_not_stop_the_port(tmp_path: Path) -> None:
    """hypercorn's HTTP/2 raises when DATA comes for a stream already answered; that ends
    that connection only (it used to end the HTTP port's accept loop, and the server)."""
    body = os.urandom(300_000)
    with running_server(tmp_path, users=("alice",)) as server:

        async def scenario() -> tuple[list[str], list[int]]:
            alice = await login(server, "alice@localhost/a")
            put, get = await slot(alice, "a.png", len(body), "image/png")
            plain = f"http://127.0.0.1:{server.http_port}"
            tls = f"https://127.0.0.1:{server.https_port}"
            outcomes = []
            async with httpx.AsyncClient(http2=True, verify=False, timeout=10) as http:  # noqa: S501
                for _ in range(3):  # too long: 413 before the body is read
                    try:
                        answer = await http.put(
                            put.replace(plain, tls),
                            content=body + b"x",
                            headers={"content-type": "image/png"},
                        )
                        outcomes.append(str(answer.status_code))
                    except httpx.TransportError:
                        outcomes.append("reset")
            async with httpx.AsyncClient(http2=True, verify=False, timeout=10) as http:  # noqa: S501
                good = await http.put(
                    put.replace(plain, tls), content=body, headers={"content-type": "image/png"}
                )
                got = await http.get(get.replace(plain, tls))
                health = await http.get(f"{plain}/healthz")
            alice.disconnect()
            assert got.content == body and got.http_version == "HTTP/2"
            return outcomes, [good.status_code, got.status_code, health.status_code]

        outcomes, later = run(scenario)
        assert set(outcomes) <= {"413", "reset"}
        assert later == [201, 200, 200]
        assert server.proc is not None and server.proc.poll() is None
