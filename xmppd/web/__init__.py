"""The browser chat widget: JavaScript sources here, the built files in ``dist/``.

The HTTP side serves :data:`DIST_DIR` at :data:`URL_PATH` (``/chat/``). ``dist/`` is not in
git (it bundles Strophe.js from npm): ``./run`` and ``.ci/run`` build it with
``npm ci && node build.mjs`` in this folder; :func:`build_hint` says so to someone who
opens ``/chat/`` without it.
"""

from __future__ import annotations

from pathlib import Path

#: Folder with package.json, build.mjs and src/.
WIDGET_DIR = Path(__file__).resolve().parent
#: What ``node build.mjs`` produces and the HTTP server serves.
DIST_DIR = WIDGET_DIR / "dist"
#: The widget script inside DIST_DIR (the forum template's <script src>).
SCRIPT_NAME = "xmppd-chat.js"
#: Where DIST_DIR is served.
URL_PATH = "/chat/"


def is_built() -> bool:
    """Whether the widget has been built (the demo page and script exist)."""
    return (DIST_DIR / "index.html").is_file() and (DIST_DIR / SCRIPT_NAME).is_file()


def build_hint() -> str:
    """What to run when ``dist/`` is missing (for logs and the 404 page of ``/chat/``)."""
    return (
        f"the chat widget is not built: install Node.js >= 18 with npm, then run "
        f"`npm ci && node build.mjs` in {WIDGET_DIR} (./run does this when npm is present)"
    )
