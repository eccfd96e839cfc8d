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
    def __init__(self, *, script: Transcript, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.script = script
        #: pytest-trio's trio_mode inspects every item's ``obj`` for a coroutine function;
        #: this one runs its own ``trio.run``.
        self.obj = self.runtest

    def runtest(self) -> None:
        with tempfile.TemporaryDirectory(prefix=f"transcript-{self.name}-") as data_dir:
            try:
                trio.run(play, self.script, Path(data_dir))
            except BaseExceptionGroup as group:
                raise _single(group) from None

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> str:  # type: ignore[override]
        if isinstance(excinfo.value, TranscriptFailure):
            return f"{self.script.title}\n{excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"transcript {self.path.name}"


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one failure inside trio's nested nursery groups (or the group, if several)."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error
