"""webridge's datagram socket on a real filesystem: permissions, stale files, the CLI."""

from __future__ import annotations

import grp
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridges.webridge import dgram

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sockdir() -> Iterator[Path]:
    # short: AF_UNIX paths are limited to 108 bytes
    path = Path(tempfile.mkdtemp(prefix="wbs-"))
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def test_bind_sets_mode_and_group_and_leaves_no_temp_file(sockdir: Path) -> None:
    group = grp.getgrgid(os.getgid()).gr_name
    sock, inode = dgram.bind(sockdir / "w.sock", 0o620, group)
    try:
        st = os.lstat(sockdir / "w.sock")
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o620
        assert st.st_gid == os.getgid() and st.st_ino == inode
        assert [p.name for p in sockdir.iterdir()] == ["w.sock"]
        dgram.send(sockdir / "w.sock", b"ping")
        assert sock.recv(100) == b"ping"
    finally:
        sock.close()
    dgram.unlink_if_ours(sockdir / "w.sock", inode)
    assert not (sockdir / "w.sock").exists()


def test_stale_socket_is_replaced(sockdir: Path) -> None:
    path = sockdir / "w.sock"
    old = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    old.bind(str(path))
    old.close()  # the file stays: a crashed bridge
    sock, inode = dgram.bind(path, 0o600)
    try:
        assert os.lstat(path).st_ino == inode
        dgram.send(path, b"x")
        assert sock.recv(10) == b"x"
    finally:
        sock.close()


def test_live_socket_is_not_stolen(sockdir: Path) -> None:
    path = sockdir / "w.sock"
    first, inode = dgram.bind(path, 0o600)
    try:
        with pytest.raises(dgram.SocketError, match="already reading"):
            dgram.bind(path, 0o600)
        assert os.lstat(path).st_ino == inode
        # the refused attempt removed nothing: the first still receives
        dgram.send(path, b"still mine")
        assert first.recv(20) == b"still mine"
    finally:
        first.close()


def test_a_regular_file_is_never_replaced(sockdir: Path) -> None:
    path = sockdir / "w.sock"
    path.write_text("precious", encoding="utf-8")
    with pytest.raises(dgram.SocketError, match="not a socket"):
        dgram.bind(path, 0o600)
    assert path.read_text(encoding="utf-8") == "precious"


def test_unknown_group_is_an_error(sockdir: Path) -> None:
    with pytest.raises(dgram.SocketError, match="no group"):
        dgram.bind(sockdir / "w.sock", 0o660, "no-such-group-xyz")
    assert list(sockdir.iterdir()) == []


def test_say_cli_sends_plain_text_and_fails_when_nobody_listens(sockdir: Path) -> None:
    path = sockdir / "w.sock"
    sock, _ = dgram.bind(path, 0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBRIDGE_")}
    cmd = [sys.executable, "-m", "bridges.webridge", "say", "--socket", str(path)]
    try:
        done = subprocess.run([*cmd, "{hello}", "wörld"], cwd=ROOT, env=env, timeout=30)
        assert done.returncode == 0
        assert json.loads(sock.recv(100)) == {"type": "raw", "text": "{hello} wörld"}
        done = subprocess.run([*cmd, "--who", "ops", "hi"], cwd=ROOT, env=env, timeout=30)
        assert done.returncode == 0
        assert json.loads(sock.recv(100)) == {"type": "say", "who": "ops", "text": "hi"}
    finally:
        sock.close()
    path.unlink()
    failed = subprocess.run(
        [*cmd, "anyone?"], cwd=ROOT, env=env, timeout=30, capture_output=True, text=True
    )
    assert failed.returncode == 1
    assert "cannot reach the bridge" in failed.stderr
