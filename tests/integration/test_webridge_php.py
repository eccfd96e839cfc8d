"""The forum's saxSay() (bridges/webridge/php/saxsay.php) run by Debian's php-cli."""

from __future__ import annotations

import json
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_program
from tests.slix import run
from tests.webridge_process import URL, WebridgeProcess, bodies_from_sax, occupant, webridge_server
from tests.xmppd_process import XmppdProcess

pytestmark = pytest.mark.integration

SAXSAY = Path(__file__).resolve().parents[2] / "bridges/webridge/php/saxsay.php"

# Records anything PHP reports (the forum has its own error handler, too), calls saxSay()
# with the JSON-decoded arguments and prints {"result": …, "seconds": …, "errors": […]}.
SCRIPT = """<?php
error_reporting(E_ALL);
ini_set('display_errors', '1');
$errors = [];
set_error_handler(function ($no, $str) use (&$errors) { $errors[] = $str; return true; });
require %(saxsay)s;
$calls = json_decode($argv[1], true);
$results = [];
$t = microtime(true);
foreach ($calls as $args) {
    $results[] = saxSay(...$args);
}
echo json_encode(['results' => $results, 'seconds' => microtime(true) - $t, 'errors' => $errors]);
"""


def php(calls: list[list[object]], tmp: Path) -> dict[str, object]:
    binary = require_program("php", "Debian package php-cli")
    script = tmp / "call_saxsay.php"
    script.write_text(SCRIPT % {"saxsay": json.dumps(str(SAXSAY))}, encoding="utf-8")
    done = subprocess.run(
        [binary, str(script), json.dumps(calls)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    # nothing but our JSON on stdout: no "Warning:" printed by PHP
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[XmppdProcess, WebridgeProcess]]:
    tmp: Path = tmp_path_factory.mktemp("webridge_php")
    server = webridge_server(tmp)
    server.start()
    bridge = WebridgeProcess(tmp, server)
    try:
        bridge.start()
        yield server, bridge
    finally:
        bridge.close()
        server.stop()


def test_saxsay_posts_into_the_room(
    pair: tuple[XmppdProcess, WebridgeProcess], tmp_path: Path
) -> None:
    server, bridge = pair
    tag = uuid.uuid4().hex[:6]
    sock = str(bridge.socket_path)
    calls: list[list[object]] = [
        # the old magic numbers: 2 = a reply, 1 = a new topic, 4 = a new member
        [2, "alice", f"How do I … {tag}", {"forum": "Calculators", "url": URL}, sock],
        [1, "bob", f"TI-84 &amp; me {tag}", URL, sock],
        [4, f"carol{tag}", "", "", sock],
        ["3", "erin", f"Release notes {tag}", URL, sock],  # a number as a string (from a form)
        # symbolic types work as well
        ["announcement", "", f"Maintenance {tag}", "", sock],
        ["say", "dave", f"hello <all> {tag}", "", sock],
    ]

    async def scenario() -> tuple[dict[str, object], list[str]]:
        alice = await occupant(server, "php")
        out = php(calls, tmp_path)
        got = await bodies_from_sax(alice, len(calls), tag)
        await alice.close()
        return out, got

    out, got = run(scenario)
    assert out["results"] == [True] * len(calls)
    assert out["errors"] == []
    assert got == [
        f"alice replied to [Calculators] How do I … {tag}: {URL}",
        f"bob started a new topic TI-84 & me {tag}: {URL}",
        f"carol{tag} just registered. Welcome!",
        f"erin edited a post in Release notes {tag}: {URL}",
        f"Announcement: Maintenance {tag}",
        f"dave: hello <all> {tag}",
    ]


@pytest.fixture
def sockdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="wbp-"))
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def test_bridge_down_returns_false_quickly_and_silently(sockdir: Path, tmp_path: Path) -> None:
    missing = sockdir / "missing.sock"
    stale = sockdir / "stale.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(str(stale))
    dead.close()  # the file of a crashed bridge: nobody reads
    started = time.monotonic()
    out = php(
        [
            [2, "alice", "t", "https://x", str(missing)],
            [2, "alice", "t", "https://x", str(stale)],
            [99, "alice", "unknown magic number", "", str(missing)],
        ],
        tmp_path,
    )
    assert out["results"] == [False, False, False]
    assert out["errors"] == []
    assert out["seconds"] < 1.0
    assert time.monotonic() - started < 10  # the whole php process, start-up included


def test_a_bridge_that_does_not_read_never_blocks_the_page(sockdir: Path, tmp_path: Path) -> None:
    """A live but stuck bridge: its queue fills up, the calls fail instead of waiting."""
    path = sockdir / "stuck.sock"
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stuck.bind(str(path))
    try:
        out = php([[6, "alice", f"message {i}", "", str(path)] for i in range(50)], tmp_path)
        results = out["results"]
        assert isinstance(results, list)
        assert results[0] is True and results[-1] is False  # queued, then refused
        assert out["errors"] == []
        assert out["seconds"] < 1.0
        first = json.loads(stuck.recv(65536))
        assert first == {"type": "say", "who": "alice", "text": "message 0"}
    finally:
        stuck.close()
