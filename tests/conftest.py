"""Shared fixtures and helpers for the whole suite.

- ``xmppd_server``: a real ``xmppd serve`` subprocess with users alice/bob (password
  ``secret``), see :mod:`tests.xmppd_process`.
- :func:`require_program`: an external program a test needs (a Debian XMPP client, a
  browser…). Outside CI a missing program skips the test; in CI (``CI`` set) it FAILS it,
  so a broken ``.ci/run`` cannot hide behind green skips.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

from tests.xmppd_process import xmppd_server  # noqa: F401 - registers the fixture


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(message: str, ci_hint: str = ".ci/run must install it") -> NoReturn:
    """A part a test needs is missing: fail in CI (where .ci/run provides it), skip
    elsewhere."""
    if in_ci():
        pytest.fail(f"{message}: {ci_hint}", pytrace=False)
    pytest.skip(message)
    raise AssertionError("unreachable")  # pytest.skip raises


def require_program(name: str, hint: str = "") -> str:
    """Absolute path of ``name`` on PATH; fail in CI, skip elsewhere, when it is missing."""
    path = shutil.which(name)
    if path:
        return path
    unavailable(f"{name} is not installed" + (f" ({hint})" if hint else ""))
