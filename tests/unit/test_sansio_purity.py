"""The sans-IO rule (DESIGN.md): stream/, xml/, mam/ and bosh/session.py, body.py import no I/O.

Checked in a fresh interpreter, so what other tests imported cannot hide a violation.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["xmppd.stream", "xmppd.xml", "xmppd.pubsub", "xmppd.mam"]
#: Single sans-IO modules inside packages that also hold trio shells.
MODULES = ["xmppd.bosh.body", "xmppd.bosh.session"]
FORBIDDEN = ["trio", "asyncio", "sqlalchemy", "socket", "ssl", "selectors", "hypercorn", "anyio"]


def sansio_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        path = ROOT / package.replace(".", "/")
        names.append(package)
        names += [f"{package}.{m.name}" for m in pkgutil.iter_modules([str(path)])]
    return names + MODULES


def test_there_is_something_to_check() -> None:
    modules = sansio_modules()
    assert {"xmppd.stream.c2s", "xmppd.stream.sasl", "xmppd.xml.parser"} <= set(modules)


@pytest.mark.parametrize("module", sansio_modules())
def test_module_imports_no_io(module: str) -> None:
    code = (
        "import importlib, json, sys\n"
        # this checkout, not whatever an editable install in the venv points at
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        f"importlib.import_module({module!r})\n"
        f"print(json.dumps(sorted(m for m in {FORBIDDEN!r} if m in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-E", "-s", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [], f"{module} imports I/O"


def test_the_check_would_catch_a_violation() -> None:
    """Guard against a vacuous check: a module that does import trio is caught."""
    code = (
        "import json, sys\nimport xmppd.transport.c2s\n"
        f"print(json.dumps(sorted(m for m in {FORBIDDEN!r} if m in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "trio" in json.loads(result.stdout.strip().splitlines()[-1])
