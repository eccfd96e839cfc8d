"""A client that stops reading is cut off, whatever the size of its queue (issue 13).

With the send queue large enough that it never overflows, the only thing that can end
such a connection is the write timeout: the kernel's buffers fill, one write waits, and
after ``c2s.send_timeout`` the server hangs up and the session ends.
"""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import pytest

from tests.raw_client import RawClient
from tests.xmppd_process import running_server

pytestmark = pytest.mark.integration

#: Incompressible, so WebSocket compression cannot make the flood small.
BODY = base64.b64encode(os.urandom(150_000)).decode()


def test_a_client_that_stops_reading_is_cut_off_after_the_send_timeout(tmp_path: Path) -> None:
    with running_server(
        tmp_path,
        users=("alice", "bob"),
        c2s={"send_timeout": 2.0, "send_queue_bytes": 64 * 1024 * 1024},
    ) as server:
        sink = RawClient(server.port, rcvbuf=4096)
        sink.login("alice", "secret", "sink")
        bob = RawClient(server.port)
        bob.login("bob", "secret", "flood")
        offset = len(server.log())
        started = time.monotonic()
        for i in range(40):  # 8 MB: more than the kernel buffers both sides hold
            bob.send(
                f"<message to='alice@localhost/sink' type='chat' id='m{i}'>"
                f"<body>{BODY}</body></message>".encode()
            )
        line = server.wait_for_log(r"event=send_timeout[^\n]*", offset, timeout=30)
        assert "jid=alice@localhost/sink" in line and "transport=tcp" in line
        server.wait_for_log(r"event=session_ended jid=alice@localhost/sink", offset)
        assert time.monotonic() - started < 25
        # the server is fine for everyone else
        again = RawClient(server.port)
        again.login("alice", "secret", "fresh")
        again.close()
        sink.close()
        bob.close()


def test_a_websocket_client_that_stops_reading_is_cut_off(tmp_path: Path) -> None:
    import asyncio
    import socket

    from tests.slix import run
    from tests.ws_client import WsXmpp

    with running_server(
        tmp_path,
        users=("alice", "bob"),
        c2s={"send_timeout": 2.0, "send_queue_bytes": 64 * 1024 * 1024},
    ) as server:
        offset = len(server.log())

        async def scenario() -> None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", server.http_port))
            ws = await WsXmpp.connect(
                f"ws://127.0.0.1:{server.http_port}/xmpp-websocket",
                sock=sock,
                max_queue=4,
                compression=None,
            )
            await ws.login("alice", "secret", "sink")
            bob = RawClient(server.port)
            bob.login("bob", "secret", "flood")
            for i in range(40):  # nothing reads them: websockets stops after max_queue frames
                bob.send(
                    f"<message to='alice@localhost/sink' type='chat' id='m{i}'>"
                    f"<body>{BODY}</body></message>".encode()
                )
            bob.close()
            # stay connected, reading nothing, until the server gives up on us
            for _ in range(300):
                if "event=send_timeout" in server.log()[offset:]:
                    break
                await asyncio.sleep(0.1)
            await ws.ws.close()

        run(scenario, timeout=60)
        line = server.wait_for_log(r"event=send_timeout[^\n]*", offset, timeout=1)
        assert "transport=http" in line  # hypercorn's write, given up by its stream
        assert '"send_timeout"' not in line
        server.wait_for_log(r"event=session_ended jid=alice@localhost/sink", offset)
