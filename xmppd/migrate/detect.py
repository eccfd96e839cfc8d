"""What ``xmppd import ejabberd SOURCE`` was given: a SQL URL, an XEP-0227 file or a
Mnesia text dump (``--from`` says it outright). The file readers are imported by name
only when needed, so a missing one is a one-line error, not a crash at start-up.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from xmppd.migrate.model import Source

__all__ = ["FORMATS", "DetectError", "detect", "open_source"]

FORMATS = ("sql", "dump", "xep0227")
_URL = re.compile(r"^[a-z][a-z0-9+]*://", re.IGNORECASE)
_PIE = "urn:xmpp:pie:0"
_READERS = {
    "dump": ("xmppd.migrate.mnesia_dump", "MnesiaDumpSource"),
    "xep0227": ("xmppd.migrate.xep0227", "Xep0227Source"),
}


class DetectError(ValueError):
    """The argument is not a source xmppd can read; the text says why (one line)."""


def detect(argument: str) -> str:
    """``sql``, ``xep0227`` or ``dump`` from the argument's look and first bytes."""
    if _URL.match(argument):
        return "sql"
    path = Path(argument)
    if not path.is_file():
        raise DetectError(f"{argument}: no such file, and not a database URL")
    with path.open("rb") as f:
        head = f.read(4096)
    if _PIE.encode() in head:
        return "xep0227"
    text = head.lstrip()
    if text.startswith((b"{", b"[", b"%")):
        return "dump"
    raise DetectError(f"{argument}: neither an XEP-0227 file nor an Erlang term dump (--from)")


def open_source(argument: str, form: str | None = None, host: str | None = None) -> Source:
    """The reader for ``argument`` (``form`` from ``--from``, else :func:`detect`)."""
    form = form or detect(argument)
    if form == "sql":
        from xmppd.migrate.ejabberd_sql import EjabberdSqlSource

        try:
            return EjabberdSqlSource(argument, host=host)
        except Exception as exc:  # the driver's errors: a bad URL, a refused login…
            first = (str(exc).splitlines() or [""])[0][:200]
            raise DetectError(f"cannot read the ejabberd database: {first}") from None
    if form not in _READERS:
        raise DetectError(f"--from must be one of {', '.join(FORMATS)}")
    module_name, class_name = _READERS[form]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise DetectError(
            f"this xmppd cannot read --from {form} ({module_name} is missing)"
        ) from None
    return getattr(module, class_name)(Path(argument))
