"""The lock files pin, with hashes, every dependency pyproject.toml names, consistently."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PIN = re.compile(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;\\]+)")


def pins(name: str) -> dict[str, tuple[str, int]]:
    """Package -> (version, number of hashes) of one lock file."""
    out: dict[str, tuple[str, int]] = {}
    current = ""
    for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
        m = PIN.match(line)
        if m:
            current = canonicalize_name(m.group(1))
            out[current] = (m.group(2), 0)
        elif "--hash=sha256:" in line and current:
            version, hashes = out[current]
            out[current] = (version, hashes + 1)
    return out


RUNTIME = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
TEST = [
    Requirement(r)
    for extra in ("test", "bench")  # scripts/lock puts both in the test lock
    for r in PYPROJECT["project"]["optional-dependencies"][extra]
]
BUILD = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]


@pytest.mark.parametrize(
    ("lock", "requirements"),
    [("requirements.lock", RUNTIME + BUILD), ("requirements-test.lock", RUNTIME + TEST + BUILD)],
)
def test_lock_pins_every_requirement_within_its_range(lock: str, requirements: list) -> None:
    locked = pins(lock)
    for req in requirements:
        name = canonicalize_name(req.name)
        assert name in locked, f"{lock} lacks {name}: run scripts/lock"
        version, _ = locked[name]
        assert req.specifier.contains(version, prereleases=True), (
            f"{lock}: {name}=={version} is outside pyproject.toml's {req.specifier}"
        )


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-test.lock"])
def test_every_pin_carries_hashes(lock: str) -> None:
    locked = pins(lock)
    assert len(locked) > 10
    assert not [name for name, (_, hashes) in locked.items() if hashes == 0]


def test_runtime_and_test_locks_agree() -> None:
    runtime, test = pins("requirements.lock"), pins("requirements-test.lock")
    differ = {n: (v, test.get(n)) for n, (v, _) in runtime.items() if test.get(n, (v,))[0] != v}
    assert not differ, f"regenerate both locks with scripts/lock: {differ}"
    assert set(runtime) <= set(test)
