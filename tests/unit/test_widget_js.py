"""The chat widget's pure JavaScript modules (entity decoding, history JSON, de-duplication),
tested with Node's own test runner: ``node --test xmppd/web/test/``."""

from __future__ import annotations

import subprocess

from tests.conftest import require_program
from xmppd.web import WIDGET_DIR


def test_widget_pure_modules() -> None:
    node = require_program("node", "Debian package nodejs")
    result = subprocess.run(
        [node, "--test", "test/"],
        cwd=WIDGET_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout
