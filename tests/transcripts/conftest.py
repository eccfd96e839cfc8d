"""Collects the transcript files (``*.scs``) under this directory: one test per file.

Each file runs against its own in-process server with a fresh database (see README.md
here for the format and :mod:`tests.transcripts.runner` for how it is played).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.transcripts.runner import TranscriptFailure, play
from tests.transcripts.script import ScriptError, Transcript, load

SUFFIX = ".scs"


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.suffix == SUFFIX:
        return TranscriptFile.from_parent(parent, path=file_path)
    return None


class TranscriptFile(pytest.File):
    """One ``*.scs`` file: a single test, or a collection error naming the bad line."""

    def collect(self) -> Iterator[pytest.Item]:
        try:
            script = load(self.path)
        except ScriptError as exc:
            raise self.CollectError(str(exc)) from None
        item = TranscriptItem.from_parent(self, name=self.path.stem, script=script)
        item.add_marker(pytest.mark.integration)
        if script.xfail:
            item.add_marker(pytest.mark.xfail(reason=script.xfail, strict=True))
        yield item


class TranscriptItem(pytest.Item):
    """Plays one transcript against a fresh in-process server."""

    def __init__(self, *, script: Transcript, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.script = script
        #: pytest-trio's trio_mode inspects every item's ``obj`` for a coroutine function;
        #: this one runs its own ``trio.run``.
        self.obj = self.runtest

    def runtest(self) -> None:
        with tempfile.TemporaryDirectory(prefix=f"transcript-{self.name}-") as data_dir:
            trio.run(play, self.script, Path(data_dir))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        """A transcript failure is its own report (file, line, expected, got): no traceback."""
        if isinstance(excinfo.value, TranscriptFailure):
            return f"{self.script.title}\n{excinfo.value}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"transcript {self.path.name}"
