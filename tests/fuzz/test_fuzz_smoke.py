"""Every fuzz target (fuzz/targets/) runs briefly, and every crash it once found stays fixed.

Long runs are on demand (``fuzz/run TARGET --minutes N``, fuzz/README.md); here each
target gets a bounded number of executions from its seed corpus (a few seconds), which
catches a target broken by a product change, and every file in fuzz/regressions/TARGET/
is replayed in-process through the target's ``TestOneInput``.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "fuzz"
TARGETS = sorted(p.stem for p in (FUZZ / "targets").glob("*.py") if not p.stem.startswith("_"))
REGRESSIONS = sorted((p.parent.name, p) for p in (FUZZ / "regressions").glob("*/*") if p.is_file())


def load(target: str) -> ModuleType:
    """The target module, as ``fuzz/run`` loads it (``_support`` importable)."""
    if str(FUZZ / "targets") not in sys.path:
        sys.path.insert(0, str(FUZZ / "targets"))
    spec = importlib.util.spec_from_file_location(
        f"fuzz_target_{target}", FUZZ / "targets" / f"{target}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_lists_every_target_and_each_has_a_seed_corpus() -> None:
    listed = subprocess.run(
        [sys.executable, FUZZ / "run", "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert listed == TARGETS and len(TARGETS) >= 12
    for target in TARGETS:
        assert any((FUZZ / "corpus" / target).iterdir()), f"no seed corpus for {target}"
        assert callable(load(target).TestOneInput)


def test_run_refuses_an_unknown_target() -> None:
    proc = subprocess.run(
        [sys.executable, FUZZ / "run", "nope", "--runs", "1"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "unknown target" in proc.stderr


@pytest.mark.parametrize("target", TARGETS)
def test_target_runs_clean(target: str) -> None:
    proc = subprocess.run(
        [sys.executable, FUZZ / "run", target, "--runs", "400", "--seconds", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    summary = proc.stdout.strip().splitlines()[-1]
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = re.match(rf"{target}: (\d+) executions in [\d.]+ s wall", summary)
    assert m is not None and int(m.group(1)) > 0, summary


@pytest.mark.parametrize(
    ("target", "path"), REGRESSIONS, ids=[f"{t}/{p.name}" for t, p in REGRESSIONS]
)
def test_regression_input_stays_fixed(target: str, path: Path) -> None:
    load(target).TestOneInput(path.read_bytes())


def test_there_are_regressions_to_replay() -> None:
    assert REGRESSIONS and {t for t, _ in REGRESSIONS} <= set(TARGETS)
